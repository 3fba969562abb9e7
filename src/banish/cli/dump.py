"""``banish dump``: every enabled jail's resolved configuration (``fail2ban-client -d``).

Owns the readable and the JSON form of a loaded ``Config``: per jail the settings the core
uses, the source, the filter's regex text after every ``<tag>``/``%(option)s`` substitution,
the native firewall and each action.d action's commands as they will run (only per-ban tags
such as ``<ip>`` left). Skipped jails are listed with their error, so a dump never hides a jail
that will not run. Must not compile regexes (``banish check`` does), run anything or look at
the disk beyond loading the config; it shows what the config says, not what the host holds.

Numbers print as the config meant them: whole seconds as whole numbers (600, not 600.0).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..paths import default_config_dir

if TYPE_CHECKING:  # the config reader is imported when dumping: `banish status` starts fast
    from ..config.actiondef import ActionDefinition
    from ..config.filterdef import FilterDefinition
    from ..config.loader import Config, JailConfig

__all__ = ["add_arguments", "by_family", "config_document", "jail_document", "render", "run"]

Document = dict[str, Any]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="DIR",
                   help="config directory (default: /etc/banish or the packaged defaults)")
    p.add_argument("--jail", metavar="NAME", action="append", default=[],
                   help="dump this jail only (repeatable; default: every enabled jail)")
    p.add_argument("--json", action="store_true",
                   help="one JSON document: {config, jails: [...], skipped: [...], warnings}")


def run(args: argparse.Namespace) -> int:
    from ..config.loader import load_config

    directory = args.config or default_config_dir()
    config = load_config(directory, only=set(args.jail) or None)  # ConfigError: main prints it
    document = config_document(config)
    if args.json:
        json.dump(document, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(document))
    return 0


# -- the document -----------------------------------------------------------------------------

def number(value: float | None) -> float | int | None:
    """Whole numbers as ints: a config says ``600``, so the dump does too."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def config_document(config: Config) -> Document:
    return {
        "config": config.directory,
        "jails": [jail_document(j) for j in config.jails],
        "skipped": [{"name": s.name, "error": str(s.error)} for s in config.skipped],
        "warnings": [str(w) for w in config.warnings],
        "friends": [{"name": f.name, "file": f.file, "protocol": f.protocol,
                     "ports": [list(p) if isinstance(p, tuple) else p for p in f.ports],
                     "friends": [str(n) for n in f.friends.networks] + list(f.friends.names)}
                    for f in config.friends],
    }


def jail_document(jail: JailConfig) -> Document:
    s = jail.settings
    inc = s.bantime_increment
    source = jail.source
    firewall = jail.jail_firewall
    subnets = jail.subnets
    return {
        "name": jail.name,
        "enabled": s.enabled,
        "file": jail.file,
        "maxretry": s.maxretry,
        "maxmatches": s.matches_kept,
        "findtime": number(s.findtime),
        "bantime": number(s.bantime),
        "bantime.increment": inc.increment,
        "bantime.factor": number(inc.factor),
        "bantime.formula": inc.formula.source if inc.formula is not None else None,
        "bantime.multipliers": [number(m) for m in inc.multipliers],
        "bantime.maxtime": number(inc.maxtime),
        "bantime.rndtime": number(inc.rndtime),
        "bantime.overalljails": inc.overalljails,
        "backend": source.backend,
        "logpath": [{"path": p.path, "tail": p.tail} for p in source.logpaths],
        "journalmatch": list(source.journalmatch),
        "journalpath": source.journal_path,
        "journalfiles": list(source.journal_files),
        "usedns": s.usedns.value,
        "ignoreip": {"networks": [str(n) for n in s.ignoreip.networks],
                     "names": list(s.ignoreip.names)},
        "ignoreself": s.ignoreself,
        "ignorecommand": s.ignorecommand,
        "logtimezone": jail.logtimezone,
        "filter": filter_document(s.filter, jail.filter),
        "journal_filter": (filter_document(s.filter, jail.journal_filter)
                           if jail.journal_filter is not None else None),
        "firewall": {
            "backend": jail.backend,
            "ports": [list(p) if isinstance(p, tuple) else p for p in firewall.ports],
            "protocol": firewall.protocol,
            "blocktype": firewall.blocktype,
            "forward": firewall.forward,
        },
        "subnets": {
            "banprefix6": subnets.banprefix6,
            "escalate": subnets.escalate_count,
            "escalate.period": number(subnets.escalate_period),
            "escalate.prefix4": subnets.escalate_prefix4,
            "escalate.prefix6": subnets.escalate_prefix6,
        },
        "actions": [action_document(a) for a in jail.actions],
    }


def filter_document(spec: str, definition: FilterDefinition) -> Document:
    return {
        "name": spec,
        "file": definition.file,
        "logtype": definition.logtype,
        "prefregex": definition.prefregex,
        "failregex": list(definition.failregex),
        "ignoreregex": list(definition.ignoreregex),
        "datepattern": definition.datepattern,
        "maxlines": definition.maxlines,
        "journalmatch": [" ".join(words) for words in definition.journalmatch],
    }


def action_document(action: ActionDefinition) -> Document:
    from ..config.actiondef import OPERATIONS

    scripts: dict[str, dict[str, str]] = {}
    families = script_families(action.families)
    for op in OPERATIONS:
        texts = by_family({f: action.script(op, f) for f in families}, families)
        if texts:
            scripts[op] = texts
    return {
        "name": action.name,
        "file": action.file,
        "timeout": number(action.timeout),
        "families": list(action.families),
        "start_on_demand": action.start_on_demand,
        "norestored": action.norestored,
        "unresolved": list(action.unresolved),
        "scripts": scripts,
    }


def script_families(start_families: Sequence[str]) -> tuple[str, ...]:
    from ..config.actiondef import FAMILIES

    """The families an action's commands can run for: bans always carry inet4 or inet6, and
    an action without ``[Init?family=...]`` sections starts and stops with family ""."""
    return (("",) if "" in start_families else ()) + FAMILIES


def by_family(texts: Mapping[str, str], families: Sequence[str]) -> dict[str, str]:
    from ..config.actiondef import FAMILIES

    """One operation's command per family, ``""`` meaning "the same for every family".

    Empty commands do nothing and are left out; a family-less ("") command that equals a
    family's is not repeated. ``tests/compat/test_dump.py`` folds fail2ban's commands with
    this same rule, so the two are compared family by family.
    """
    present = {f: texts[f] for f in families if texts.get(f)}
    if not present:
        return {}
    distinct = set(present.values())
    if len(present) == len(families) and len(distinct) == 1:
        return {"": distinct.pop()}
    return {f: t for f, t in present.items()
            if f or t not in {present.get(g) for g in FAMILIES}}


# -- human form -------------------------------------------------------------------------------

_WIDTH = 22


def render(document: Mapping[str, Any]) -> str:
    """One block per jail, a line per setting; multi-line values continue indented."""
    out: list[str] = [f"# config {document['config']}"]
    for warning in document["warnings"]:
        out.append(f"# warning: {warning}")
    for jail in document["jails"]:
        out.append("")
        out.extend(_jail_lines(jail))
    for skipped in document["skipped"]:
        out.append("")
        out.append(f"[{skipped['name']}]  SKIPPED")
        out.append(f"  {skipped['error']}")
    for f in document.get("friends", []):
        ports = ",".join(f"{p[0]}:{p[1]}" if isinstance(p, list) else str(p) for p in f["ports"])
        out += ["", f"[friends-only {f['name']}]  {f['file']}",
                f"  ports: {f['protocol']} {ports}", f"  friends: {' '.join(f['friends'])}"]
    out.append("")
    out.append(f"# {len(document['jails'])} jails, {len(document['skipped'])} skipped")
    return "\n".join(out) + "\n"


def _jail_lines(jail: Mapping[str, Any]) -> list[str]:
    lines = [f"[{jail['name']}]  {jail['file']}"]

    def put(key: str, value: Any) -> None:
        lines.extend(_field(key, value, indent=2))

    for key in ("enabled", "maxretry", "maxmatches", "findtime", "bantime"):
        put(key, jail[key])
    if jail["bantime.increment"]:
        for key in ("bantime.increment", "bantime.factor", "bantime.formula",
                    "bantime.multipliers", "bantime.maxtime", "bantime.rndtime",
                    "bantime.overalljails"):
            put(key, jail[key])
    put("backend", jail["backend"])
    put("logpath", [p["path"] + (" tail" if p["tail"] else "") for p in jail["logpath"]])
    if jail["backend"] == "systemd" or jail["journal_filter"] is not None:
        put("journalmatch", jail["journalmatch"])
    for key in ("journalpath", "journalfiles"):
        if jail[key]:
            put(key, jail[key])
    for key in ("usedns", "ignoreself", "ignorecommand", "logtimezone"):
        put(key, jail[key])
    ignore = jail["ignoreip"]
    put("ignoreip", [*ignore["networks"], *ignore["names"]])
    lines.extend(_filter_lines("filter", jail["filter"]))
    if jail["journal_filter"] is not None:
        lines.extend(_filter_lines("journal filter", jail["journal_filter"], jail["filter"]))
    fw = jail["firewall"]
    ports = ",".join(f"{p[0]}:{p[1]}" if isinstance(p, list) else str(p) for p in fw["ports"])
    if fw["backend"] is None:
        put("firewall", "none (action.d scripts only)")
    else:
        put("firewall", f"{fw['backend']} ports={ports or 'all'} protocol={fw['protocol']} "
                        f"blocktype={fw['blocktype']}" + (" forward" if fw["forward"] else ""))
    subnets = jail["subnets"]
    if subnets["banprefix6"] != 128 or subnets["escalate"]:
        put("subnets", " ".join(f"{k}={v}" for k, v in subnets.items()))
    for action in jail["actions"]:
        lines.extend(_action_lines(action))
    return lines


def _filter_lines(title: str, f: Mapping[str, Any],
                  shown: Mapping[str, Any] | None = None) -> list[str]:
    """The filter's values; with ``shown``, only those that differ from it (the journal form
    of a filter mostly repeats the file form)."""
    lines = [f"  {title + ':':<{_WIDTH}}{f['name']}  {f['file']}"]
    for key in ("logtype", "prefregex", "failregex", "ignoreregex", "datepattern", "maxlines",
                "journalmatch"):
        if shown is None or f[key] != shown[key]:
            lines.extend(_field(key, f[key], indent=4))
    return lines


def _action_lines(action: Mapping[str, Any]) -> list[str]:
    lines = [f"  {'action:':<{_WIDTH}}{action['name']}  {action['file']}"]
    if action["unresolved"]:
        lines.extend(_field("unresolved", " ".join(f"<{t}>" for t in action["unresolved"]),
                            indent=4))
    for op, texts in action["scripts"].items():
        for family, text in texts.items():
            lines.append(f"    {op} ({family}):" if family else f"    {op}:")
            lines.extend(f"        {line}".rstrip() for line in text.split("\n"))
    return lines


def _field(key: str, value: Any, *, indent: int) -> list[str]:
    """``key  value``; a list puts one item per line under the first."""
    pad = " " * indent
    width = max(_WIDTH - indent + 2, len(key) + 2)
    items = _items(value)
    first = items[0] if items else ""
    lines = [f"{pad}{key:<{width}}{first}".rstrip()]
    lines.extend(f"{pad}{'':<{width}}{item}".rstrip() for item in items[1:])
    return lines


def _items(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if value is None:
        return [""]
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]
