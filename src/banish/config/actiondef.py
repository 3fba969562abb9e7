"""Turn a fail2ban action file (``action.d/NAME.conf`` + overrides) and a jail's arguments into text.

Owns what an action means, the way fail2ban 1.0 reads it, so that action.d files run
unchanged: which options an action has, how the jail's ``action = name[key=value, ...]``
arguments, the jail's options and the file's ``[Init]`` / ``[Init?family=inet6]`` values
combine, and the static ``<tag>`` substitution that leaves only per-ban tags (``<ip>``,
``<matches>``, ``<F-USER>``...) in each script (what those hold per ban is
``banish.actions.tickets``). Must not run anything, and must never put a per-ban value into
script text: such values are only ever returned as separate strings, which the action runner
hands to ``shell_command``.

Precedence, as fail2ban applies it (learned from its client readers, written anew here):

1. the jail's arguments to the action (``iptables-multiport[port=ssh, chain=INPUT]``) win over
   the file's ``[Init]`` values and over its ``[Definition]`` commands of the same name;
2. ``name`` defaults to the jail's name and ``actname`` to the file's (plus a suffix when
   ``name`` differs from the jail's), so two copies of one action in a jail stay apart;
3. ``[Init]`` values (each also kept as ``known/<option>``), then ``[Definition]`` helpers;
4. the jail's own options (only the ones fail2ban knows as jail options: ``logpath``,
   ``bantime``, ``maxretry``...) are visible to ``%(option)s`` interpolation inside the action
   file and to ``<tag>`` look-ups of helpers the action does not define itself. ``port``,
   ``protocol`` and ``chain`` reach an action only as arguments: jail.conf's ``action_``
   shortcuts write them into the spec, a bare ``action = iptables-multiport`` gets the file's
   defaults -- exactly as with fail2ban;
5. ``<bantime>`` is always the ban's own duration, never a configured value.

``[Init?family=inet6]`` values replace the plain ones when a command runs for an IPv6 ban
(also over a jail argument of the same name, as in fail2ban); an action with such sections
runs ``actionstart`` per address family on the first ban of that family.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import ConfigError
from .filterdef import parse_args, split_specs
from .ini import IniTree
from .substitute import substitute_tags
from .values import parse_bool, parse_duration

OPERATIONS = ("actionstart", "actionstop", "actionflush", "actionreload", "actioncheck",
              "actionrepair", "actionban", "actionprolong", "actionreban", "actionunban")
"""The commands an action file may define, as fail2ban names them."""

_FLAGS = ("actionstart_on_demand", "actionrepair_on_unban", "norestored")
_DEFINITION_OPTIONS = frozenset(OPERATIONS + _FLAGS)

FAMILIES = ("inet4", "inet6")
"""The address families ``[Init?family=...]`` sections are chosen by."""

ESCAPED_TAGS = frozenset({"matches", "ipmatches", "ipjailmatches"})
"""Tags that are never substituted from configuration, even where an option has the name."""

DYNAMIC_TAGS = frozenset({
    "ip", "ip-rev", "ip-host", "fid", "failures", "time", "bantime", "bancount", "restored",
    "matches", "ipmatches", "ipjailmatches", "ipfailures", "ipjailfailures", "raw-ticket",
    "jail.banned", "jail.banned_total", "jail.found", "jail.found_total",
    "fq-hostname", "sh-hostname",
})
"""Tags filled per ban (or per run) rather than from configuration; ``<F-NAME>`` too."""

F_TAG = re.compile(r"<F-([A-Z0-9_\-]+)>")
"""A captured field of the failure (``<F-USER>``); fail2ban writes these in upper case only."""

# The option names fail2ban reads from a jail section; only these are visible to an action.
JAIL_OPTIONS = frozenset({
    "enabled", "backend", "maxretry", "maxmatches", "findtime", "bantime", "bantime.increment",
    "bantime.factor", "bantime.formula", "bantime.multipliers", "bantime.maxtime",
    "bantime.rndtime", "bantime.overalljails", "ignorecommand", "ignoreself", "ignoreip",
    "ignorecache", "filter", "logtimezone", "logencoding", "logpath", "action", "usedns",
    "prefregex", "ignoreregex", "failregex", "maxlines", "datepattern", "journalmatch",
})

DEFAULT_TIMEOUT = 60.0
_FIXED_TAGS = {"br": "\n", "sp": " "}
_FAMILY_KEY = re.compile(r"^([\w\-.]+)\?family=(\w+)$")
_ANY_CONDITION = re.compile(r"^[\w\-.]+\?")
_TAG = re.compile(r"<([^ <>]+)>")
_SPEC_NAME = re.compile(r"[\w\-./]+")
# A lower-case word in angle brackets that nothing defines: a typo or a missing argument.
_OPTION_LIKE = re.compile(r"[a-z][a-z0-9_\-]*(?:/[a-z0-9_\-]+)?")


@dataclass(frozen=True, slots=True)
class ActionDefinition:
    """One action of one jail, with every configured value already in its scripts.

    ``scripts[(operation, family)]`` is the command text for ``family`` ("" for actions without
    family sections, else ``inet4``/``inet6``); only per-ban tags remain in it. Empty scripts
    are left out: such an operation does nothing.
    """

    name: str
    """The action's name in its jail (fail2ban's ``actname``), unique within the jail."""
    file: str
    jail: str
    scripts: Mapping[tuple[str, str], str]
    timeout: float = DEFAULT_TIMEOUT
    families: tuple[str, ...] = ("",)
    """The families ``actionstart`` runs for at start (unless started on demand)."""
    start_on_demand: bool = False
    repair_on_unban: bool = False
    norestored: bool = False
    """Skip this action for bans restored after a restart (mail reports, not firewalls)."""
    unresolved: tuple[str, ...] = ()
    """Tags written in the file that nothing defines (a missing argument such as
    ``abuseipdb_category``); fail2ban runs such commands anyway, with the tag as literal text."""
    properties: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def script(self, operation: str, family: str) -> str:
        """The command text of ``operation`` for ``family``; "" when it does nothing."""
        return self.scripts.get((operation, family), "")

    def defines(self, operation: str) -> bool:
        return any(op == operation for op, _ in self.scripts)


def load_action(config_dir: str | None, spec: str, jail_options: Mapping[str, str], *,
                jail: str) -> ActionDefinition:
    """The action ``spec`` (``name``, ``name[key=value, ...]`` or a file path) for ``jail``.

    ``jail_options`` are the jail's interpolated options (``JailConfig.options``). Raises
    ConfigError naming the action file, section and option of anything wrong.
    """
    name, args = parse_spec(spec)
    if name.endswith(".py"):
        raise ConfigError(f"action {name!r} is a Python action, which banish cannot run; "
                          "use an action.d .conf file")
    tree, stem, path = _read_tree(config_dir, name)
    try:
        return _resolve(tree, stem, path, args, jail_options, jail)
    except ConfigError as exc:
        raise exc.located(file=path, section="Definition") from exc


def load_actions(config_dir: str | None, specs: Iterable[str], jail_options: Mapping[str, str],
                 *, jail: str, file: str | None = None) -> tuple[ActionDefinition, ...]:
    """Every action of a jail (``JailConfig.actions``), in order.

    A spec that names no file is reported at the jail (``file``, section ``jail``, option
    ``action``); errors inside an action file name that file.
    """
    out: list[ActionDefinition] = []
    # Joined and split again: a spec whose [...] spans lines may arrive cut at the line ends.
    for spec in split_specs("\n".join(specs)):
        try:
            definition = load_action(config_dir, spec, jail_options, jail=jail)
        except ConfigError as exc:
            if exc.where.file is not None:
                raise
            raise exc.located(file=file, section=jail, option="action") from exc
        if any(d.name == definition.name for d in out):
            raise ConfigError(f"action {definition.name!r} is given twice; give one of them "
                              "another name (name=... or actname=...)",
                              file=file, section=jail, option="action")
        out.append(definition)
    return tuple(out)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``name[k=v, ...][k2=v2]`` -> (name, arguments); a later group's value wins."""
    text = spec.strip()
    bracket = text.find("[")
    name = (text if bracket < 0 else text[:bracket]).strip()
    if not _SPEC_NAME.fullmatch(name):
        raise ConfigError(f"bad action {text!r}: expected NAME or NAME[key=value, ...]")
    groups: list[str] = []
    i = bracket
    while 0 <= i < len(text):
        end = _group_end(text, i)
        if end < 0:
            raise ConfigError(f"bad action {text!r}: '[' without its ']'")
        groups.append(text[i + 1:end])
        i = end + 1
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] != "[":
            raise ConfigError(f"bad action {text!r}: unexpected {text[i:i + 20]!r} after ']'")
    try:
        return name, parse_args(", ".join(groups))
    except ConfigError as exc:
        raise ConfigError(f"bad action {text!r}: {exc.reason}") from None


def _group_end(text: str, start: int) -> int:
    """The index of the ``]`` closing the group that opens at ``start``, or -1."""
    quote, depth = "", 0
    for i in range(start + 1, len(text)):
        c = text[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'" and text[start + 1:i].rstrip().endswith("="):
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            if not depth:
                return i
            depth -= 1
    return -1


def _read_tree(config_dir: str | None, name: str) -> tuple[IniTree, str, str]:
    if os.sep in name or name.endswith((".conf", ".local")):
        stem = os.path.splitext(name)[0]
        files = [p for p in (stem + ".conf", stem + ".local") if os.path.isfile(p)]
        if not files:
            raise ConfigError("no such action file", file=name)
        tree = IniTree()
        tree.read(files)
        return tree, os.path.basename(stem), files[0]
    if config_dir is None:
        raise ConfigError(f"unknown action {name!r}")
    base = os.path.join(config_dir, "action.d")
    if not any(os.path.isfile(os.path.join(base, name + ext)) for ext in (".conf", ".local")):
        raise ConfigError(f"unknown action {name!r} (no {name}.conf in {base})")
    tree = IniTree.read_named(base, name)
    main = os.path.join(base, name + ".conf")
    return tree, name, main if os.path.isfile(main) else os.path.join(base, name + ".local")


def _resolve(tree: IniTree, stem: str, path: str, args: Mapping[str, str],
             jail_options: Mapping[str, str], jail: str) -> ActionDefinition:
    init: dict[str, str] = dict(args)
    name = init.setdefault("name", jail)
    actname = init.get("actname")
    if actname is None:
        actname = stem
        if name != jail:
            actname += name[len(jail):] if name.startswith(jail) else "-" + name
        init["actname"] = actname
    # What %(...)s inside the file sees: the jail's options, overridden by the arguments.
    passed = {k: v for k, v in jail_options.items() if k in JAIL_OPTIONS}
    passed.update(init)

    definition: dict[str, str] = {}
    for opt in sorted(_DEFINITION_OPTIONS):
        if opt in passed:
            continue
        value = _get(tree, "Definition", opt, passed)
        if value is not None:
            definition[opt] = value
    if tree.has_section("Init"):
        for opt in tree.own_options("Init"):
            value = _get(tree, "Init", opt, {}) or ""
            if not opt.startswith("known/"):
                init["known/" + opt] = value
            init.setdefault(opt, value)
    if not any(op in definition or op in init for op in OPERATIONS):
        raise ConfigError(f"action {stem!r} defines none of actionstart, actionban, actionunban "
                          "... (is it a file that other actions only include?)")

    combined = {**definition, **init}
    conditional = {m.group(1) for k in combined if (m := _FAMILY_KEY.match(k))}

    def fallback(tag: str) -> str | None:
        # ``<sec/opt>`` and ``<known/opt>`` read the file only: the jail's values must not
        # answer them, or ``chain=<known/chain>`` in an action without a chain of its own
        # would refer to itself instead of staying an unused, unresolved tag.
        try:
            if "/" in tag:
                value = tree.get("Definition", tag)
                return value if value is not None else passed.get(tag)
            return tree.get("Definition", tag, vars=passed)
        except ConfigError:
            return None

    values = substitute_tags(combined, fallback=fallback,
                             ignore=ESCAPED_TAGS | {"timeout", "bantime"} | conditional)
    # What a running action holds: its commands and arguments, not the known/ copies; the
    # ban time is the ban's own.
    properties = {k: v for k, v in values.items()
                  if not k.startswith("known/") and k != "bantime"
                  and (k in _DEFINITION_OPTIONS or k in init)}
    timeout = DEFAULT_TIMEOUT
    if "timeout" in properties:
        timeout = parse_duration(properties["timeout"], "timeout")
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive, not {properties['timeout']!r}",
                              option="timeout")
        properties["timeout"] = f"{timeout:g}"
    flags = {f: parse_bool(properties[f], f) for f in _FLAGS if (properties.get(f) or "").strip()}

    scripts: dict[tuple[str, str], str] = {}
    unresolved: set[str] = set()
    written = "\n".join([*combined.values(), *tree.defaults.values(),
                         *(v for sec in tree.sections.values() for v in sec.values())])
    for family in ("", *FAMILIES):
        view = _family_view(properties, family)
        for op in OPERATIONS:
            text = view.get(op, "")
            if text.strip():
                unresolved.update(_leftovers(text, view, written))
                scripts[(op, family)] = text

    families_opt = (properties.get("families") or "").replace(",", " ").split()
    families = tuple(families_opt) if families_opt else (FAMILIES if conditional else ("",))
    on_demand = flags.get("actionstart_on_demand", bool(conditional))
    return ActionDefinition(
        name=actname,
        file=path,
        jail=jail,
        scripts=MappingProxyType(scripts),
        timeout=timeout,
        families=families,
        start_on_demand=on_demand,
        repair_on_unban=flags.get("actionrepair_on_unban", False),
        norestored=flags.get("norestored", False),
        unresolved=tuple(sorted(unresolved)),
        properties=MappingProxyType(properties),
    )


def _get(tree: IniTree, section: str, option: str, passed: Mapping[str, str]) -> str | None:
    try:
        return tree.get(section, option, vars=passed)
    except ConfigError as exc:
        raise exc.located(section=section, option=option) from exc


def _family_view(properties: Mapping[str, str], family: str) -> dict[str, str]:
    """The properties as a command for ``family`` sees them, every configured tag replaced.

    ``x?family=inet6`` replaces ``x`` for IPv6; ``<family>`` is the family itself unless the
    action defines an option of that name (firewalld's actions do).
    """
    view = {k: v for k, v in properties.items() if not _ANY_CONDITION.match(k)}
    if family:
        for key, value in properties.items():
            m = _FAMILY_KEY.match(key)
            if m and m.group(2) == family:
                view[m.group(1)] = value
    subst = substitute_tags(view, ignore=ESCAPED_TAGS)
    fixed = {**_FIXED_TAGS, **({} if "family" in view else {"family": family})}
    for key, value in subst.items():
        if "<" in value:
            subst[key] = _TAG.sub(lambda m: fixed.get(m.group(1), m.group(0)), value)
    return subst


def _leftovers(text: str, view: Mapping[str, str], written: str) -> set[str]:
    """Lower-case tags written in the file that no option, argument or ban fills.

    Only tags that appear as written count: ``<<sender>>`` legitimately becomes ``<fail2ban>``
    (an address in angle brackets), and upper-case ``<HOST>``-like text is left alone.
    """
    out: set[str] = set()
    for m in _TAG.finditer(text):
        tag = m.group(1)
        if tag in DYNAMIC_TAGS or tag in view or tag.startswith("F-"):
            continue
        if _OPTION_LIKE.fullmatch(tag) and m.group(0) in written:
            out.add(tag)
    return out
