"""``banish dump --json`` says what ``fail2ban-client -d`` says, jail by jail, field by field.

The input is the installed Debian fail2ban tree (never copied into this repo), copied into a
temporary directory -- ``filter.d``, ``action.d``, ``jail.d`` and ``fail2ban.conf`` as
symlinks -- with a ``jail.local`` that enables every jail of ``jail.conf``, gives every
action.d file (and jail.conf's action shortcuts) to one jail beside its stock banaction, and
sets values the stock tree leaves commented out ([DEFAULT] ignoreip and bantime.*, a few
jail-level filter options, durations, ``backend = systemd``), so that those are compared
too. fail2ban only lists a log file that exists, so ``jail.conf`` and the
``paths-*.conf`` it reads are copied with every absolute log path moved under a temporary root
(both tools read that same copy) and a file is created for every path and glob written there.

fail2ban's side: ``fail2ban-client -c DIR -d`` (it only reads the config and prints the command
stream, one Python literal per line; the socket it is given does not exist). Its action
properties are substituted the way fail2ban-server substitutes them before running a command
(``CommandAction.replaceTag`` with the family as the condition, ``<family>`` itself), by the
installed fail2ban module in a separate ``python3`` -- except ``<fq-hostname>`` and
``<sh-hostname>``, which banish, like fail2ban at run time, fills when a command runs. Durations
are read with fail2ban's own ``str2seconds``.

Legitimate normalisations, applied to both sides alike: banish keeps logpath globs as written
(its file source expands them when the jail starts), so they are expanded here; ignoreip entries
are compared as networks (``127.0.0.1/8`` is ``127.0.0.0/8``) and names; commands are folded by
family with ``banish.cli.dump.by_family``. Every other difference must be listed in
KNOWN_GAPS.md (section "banish dump"); a listed gap that no longer occurs fails too, so the list
stays true.
"""

from __future__ import annotations

import ast
import fnmatch
import glob
import io
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from banish.cli.dump import by_family
from banish.cli.main import main as banish_main
from banish.config.actiondef import FAMILIES, OPERATIONS
from tests.compat.test_fail2ban_samples import known_gaps as sample_gaps

DEBIAN = "/etc/fail2ban"
CLIENT = shutil.which("fail2ban-client") or "/usr/bin/fail2ban-client"
SYSTEM_PYTHON = "/usr/bin/python3"
_LOG_ROOTS = ("var", "opt", "home", "root", "service", "usr", "srv")
_ABS_LOG = re.compile(r"(?<=[\s=])/(?=(?:" + "|".join(_LOG_ROOTS) + ")/)")

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(
        not (os.path.isfile(os.path.join(DEBIAN, "jail.conf")) and os.path.exists(CLIENT))
        and not os.environ.get("CI"),
        reason="Debian's fail2ban package is not installed (scripts/test installs it)",
    ),
]

LOCAL_DEFAULTS = """\
[DEFAULT]
ignoreip = 127.0.0.1/8 ::1 192.0.2.10 2001:db8::/32 trusted.example.org
bantime.increment = true
bantime.factor = 2
bantime.maxtime = 5w
bantime.rndtime = 10m
bantime.formula = ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)
cfemail = admin@example.org
cfapikey = 0123456789abcdef
blocklist_de_apikey = fedcba9876543210
"""
# Jail-level values the stock jails do not set, so that they are compared too.
JAIL_EXTRAS = {
    "recidive": "bantime.multipliers = 1 5 30 60 300\n",
    "sshd": "ignoreself = false\nlogtimezone = UTC\nusedns = no\n",
    "dropbear": "backend = systemd\njournalmatch = _SYSTEMD_UNIT=dropbear.service\n",
    "pam-generic": "maxlines = 2\ndatepattern = ^%%Y-%%m-%%d %%H:%%M:%%S\n"
                   "ignoreregex = ^ignored from <HOST>$\nfailregex = ^extra failure from <HOST>$\n",
    "xinetd-fail": "ignorecommand = /bin/false <ip>\nmaxretry = 3\nfindtime = 1h 30m\n"
                   "bantime = -1\n",
}
# jail.conf's action shortcuts that already include %(action_)s.
_WHOLE_SHORTCUTS = ("%(action_mw)s", "%(action_mwl)s", "%(action_xarf)s")
_EXTRA_SHORTCUTS = ("%(action_cf_mwl)s", "%(action_blocklist_de)s", "%(action_abuseipdb)s")
# Covered by the stock jails already (a second copy would clash by name).
_STOCK_ACTIONS = ("iptables-multiport", "iptables-allports", "iptables-multiport-log")

# Runs under Debian's python3 with the installed fail2ban module: fail2ban-server's own
# substitution of action properties, and its duration parser. Reads and writes JSON.
_SERVER_SIDE = r"""
import json, sys
from fail2ban.server import action as A
from fail2ban.server.mytime import MyTime
for tag in A.DYN_REPL_TAGS:  # host names: filled when a command runs, by both
    A.ADD_REPL_TAGS.pop(tag, None)
data = json.load(sys.stdin)
out = {"durations": {s: MyTime.str2seconds(s) for s in data["durations"]}, "actions": {}}
for jail, actions in data["actions"].items():
    for name, props in actions.items():
        a = A.CommandAction(None, name)
        for key, value in props:
            setattr(a, key, value)
        families = ["inet4", "inet6"] if a._hasCondSection else ["", "inet4", "inet6"]
        scripts = {}
        for op in data["operations"]:
            scripts[op] = {}
            for family in families if op in a._properties else ():  # else: not defined
                cmd = a.replaceTag("<%s>" % op, a._properties,
                                   conditional="family=" + family if family else "",
                                   cache=a._substCache)
                scripts[op][family] = cmd.replace("<family>", family)
        out["actions"].setdefault(jail, {})[name] = {
            "families": families, "scripts": scripts, "timeout": a.timeout}
json.dump(out, sys.stdout)
"""


# -- the tree ---------------------------------------------------------------------------------

def _concrete(pattern: str) -> str:
    """A file name the glob ``pattern`` matches."""
    return re.sub(r"\[[^\]]*\]", "1", pattern).replace("*", "x").replace("?", "x")


def build_tree(tmp: Path) -> Path:
    etc, root = tmp / "fail2ban", tmp / "root"
    etc.mkdir()
    for name in sorted(os.listdir(DEBIAN)):
        source = os.path.join(DEBIAN, name)
        if name == "jail.conf" or name.startswith("paths-"):
            text = _ABS_LOG.sub(str(root) + "/", Path(source).read_text(encoding="utf-8"))
            (etc / name).write_text(text, encoding="utf-8")
            for path in re.findall(re.escape(str(root)) + r"/[^\s,]+", text):
                target = Path(_concrete(path))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        elif name not in ("jail.local",):
            (etc / name).symlink_to(source)
    sections = re.split(r"^\[([^\]]+)\]", (etc / "jail.conf").read_text("utf-8"), flags=re.M)
    jails = {name: body for name, body in zip(sections[1::2], sections[2::2], strict=True)
             if name not in ("INCLUDES", "DEFAULT")}
    extras = iter(action_specs())
    local = [LOCAL_DEFAULTS]
    for name, body in jails.items():
        local.append(f"\n[{name}]\nenabled = true\n{JAIL_EXTRAS.get(name, '')}")
        if not re.search(r"^action\s*=", body, re.M):  # keep jails with their own actions
            spec = next(extras, None)
            if spec in _WHOLE_SHORTCUTS:
                local.append(f"action = {spec}\n")
            elif spec is not None:
                local.append(f"action = %(action_)s\n         {spec}\n")
    assert next(extras, None) is None, "more action files than jails to put them in"
    (etc / "jail.local").write_text("".join(local), encoding="utf-8")
    return etc


def action_specs() -> list[str]:
    """Every action of Debian's action.d (beside the stock banaction every jail keeps), and
    jail.conf's shortcuts: one per jail, so every action file is compared."""
    names = sorted(os.path.basename(p)[:-5] for p in glob.glob(f"{DEBIAN}/action.d/*.conf"))
    files = [n for n in names if not n.endswith("-common") and n not in _STOCK_ACTIONS]
    return [*_WHOLE_SHORTCUTS, *_EXTRA_SHORTCUTS, *files]


# -- fail2ban's side --------------------------------------------------------------------------

def fail2ban_dump(etc: Path, tmp: Path) -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [CLIENT, "-c", str(etc), "-s", str(tmp / "no-such-dir" / "f2b.sock"),
         "-p", str(tmp / "no-such-dir" / "f2b.pid"), "-d"],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jails: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        cmd = ast.literal_eval(line)
        if cmd[0] == "add":
            jails[cmd[1]] = {"backend": cmd[2], "failregex": [], "ignoreregex": [],
                             "journalmatch": [], "logpath": [], "actions": {}, "ignoreip": []}
        elif cmd[0] in ("set", "multi-set") and cmd[1] in jails:
            _take(jails[cmd[1]], cmd[0] == "multi-set", cmd[2], cmd[3:])
        elif cmd[0] == "config-error":
            raise AssertionError(f"fail2ban refused the tree: {cmd[1]}")
    return jails


def _take(jail: dict[str, Any], multi: bool, opt: str, args: list[Any]) -> None:
    if opt in ("addfailregex", "addignoreregex"):
        jail[opt[3:]].extend(args[0] if multi else args[:1])
    elif opt == "addjournalmatch":
        jail["journalmatch"].append(" ".join(args))
    elif opt == "addlogpath":
        jail["logpath"].append((args[0], args[1] == "tail"))
    elif opt == "addignoreip":
        jail["ignoreip"].extend(args)
    elif opt == "addaction":
        jail["actions"][args[0]] = []
    elif opt == "action":
        props = jail["actions"][args[0]]
        props.extend(args[1] if multi else [args[1:3]])
    else:
        jail[opt] = args[0]


def server_side(jails: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    durations = sorted({str(j[k]) for j in jails.values() for k in
                        ("findtime", "bantime", "bantime.maxtime", "bantime.rndtime") if k in j})
    data = {"durations": durations, "operations": list(OPERATIONS),
            "actions": {n: j["actions"] for n, j in jails.items()}}
    proc = subprocess.run([SYSTEM_PYTHON, "-c", _SERVER_SIDE], input=json.dumps(data),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# -- banish's side ----------------------------------------------------------------------------

def banish_dump(etc: Path) -> dict[str, Any]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = banish_main(["dump", "--config", str(etc), "--json"])
    assert status == 0
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


# -- comparison -------------------------------------------------------------------------------

def _networks(words: list[str]) -> tuple[list[str], list[str]]:
    nets, names = [], []
    for word in words:
        try:
            nets.append(str(ipaddress.ip_network(word, strict=False)))
        except ValueError:
            names.append(word)
    return nets, names


def _bool(value: object) -> bool:
    """fail2ban's reader converts booleans it knows; others stay text."""
    return value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "1", "on")


def _expanded(logpaths: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    return [(path, p["tail"]) for p in logpaths for path in sorted(glob.glob(p["path"]))
            if os.path.exists(path)]


def compare_jail(name: str, f2b: Mapping[str, Any], ours: Mapping[str, Any],
                 server: Mapping[str, Any]) -> Iterator[tuple[str, str, object, object]]:
    """(field, gap key, fail2ban's value, banish's) for every field compared; equal values
    are yielded too, so the caller can count them."""
    seconds = server["durations"]
    flt = ours["filter"]

    def field(kind: str, want: object, got: object, key: str = "") -> tuple[str, str, object,
                                                                               object]:
        return kind, f"dump:{kind}:{name}{key}", want, got

    yield field("backend", f2b["backend"].split("[")[0], ours["backend"])
    for opt in ("maxretry", "maxmatches"):
        yield field(opt, int(f2b[opt]), ours[opt])
    for opt in ("findtime", "bantime", "bantime.maxtime", "bantime.rndtime"):
        if opt in f2b:
            yield field(opt, seconds[str(f2b[opt])], ours[opt])
    if "bantime.increment" in f2b:
        yield field("bantime.increment", _bool(f2b["bantime.increment"]),
                    ours["bantime.increment"])
        yield field("bantime.factor", float(f2b.get("bantime.factor", 1)),
                    float(ours["bantime.factor"]))
        yield field("bantime.formula", f2b.get("bantime.formula"), ours["bantime.formula"])
        yield field("bantime.multipliers",
                    [float(m) for m in str(f2b.get("bantime.multipliers", "")).split()],
                    [float(m) for m in ours["bantime.multipliers"]])
    yield field("usedns", f2b["usedns"], ours["usedns"])
    yield field("ignorecommand", f2b.get("ignorecommand", ""), ours["ignorecommand"])
    if "ignoreself" in f2b:
        yield field("ignoreself", _bool(f2b["ignoreself"]), ours["ignoreself"])
    yield field("logtimezone", f2b.get("logtimezone"), ours["logtimezone"])
    nets, names = _networks(f2b["ignoreip"])
    yield field("ignoreip", (nets, names),
                (ours["ignoreip"]["networks"], ours["ignoreip"]["names"]))
    if not ours["backend"].startswith("systemd"):
        yield field("logpath", sorted(f2b["logpath"]), sorted(_expanded(ours["logpath"])))
    yield field("prefregex", f2b.get("prefregex"), flt["prefregex"])
    yield field("failregex", f2b["failregex"], flt["failregex"])
    yield field("ignoreregex", f2b["ignoreregex"], flt["ignoreregex"])
    yield field("datepattern", f2b.get("datepattern"), flt["datepattern"])
    yield field("maxlines", int(f2b.get("maxlines", 1)), flt["maxlines"])
    yield field("journalmatch", f2b["journalmatch"], ours["journalmatch"])
    yield field("actions", list(f2b["actions"]), [a["name"] for a in ours["actions"]])
    theirs = server["actions"].get(name, {})
    for action in ours["actions"]:
        act = action["name"]
        if act not in theirs:
            continue
        resolved = theirs[act]
        yield field("action.timeout", resolved["timeout"], action["timeout"], f":{act}")
        families = resolved["families"]
        for op in OPERATIONS:
            want = by_family(resolved["scripts"][op], families)
            got = action["scripts"].get(op, {})
            yield field("action.command", want, got, f":{act}:{op}")


def known_gaps() -> dict[str, str]:
    """The ``dump:`` keys of KNOWN_GAPS.md (the sample-log test keeps its own there)."""
    return {k: v for k, v in sample_gaps().items() if k.startswith("dump:")}


def test_dump_agrees_with_fail2ban_client(tmp_path: Path) -> None:
    assert FAMILIES == ("inet4", "inet6")
    etc = build_tree(tmp_path)
    theirs = fail2ban_dump(etc, tmp_path)
    server = server_side(theirs)
    document = banish_dump(etc)
    ours = {j["name"]: j for j in document["jails"]}
    assert not document["skipped"], document["skipped"]
    assert len(theirs) >= 80, f"expected Debian's jails, fail2ban dumped {len(theirs)}"

    differences: dict[str, tuple[str, object, object]] = {}
    compared: Counter[str] = Counter()
    for name in sorted(set(theirs) | set(ours)):
        compared["jail"] += 1
        if name not in theirs or name not in ours:
            differences[f"dump:jail:{name}"] = ("jail", name in theirs, name in ours)
            continue
        for kind, key, want, got in compare_jail(name, theirs[name], ours[name], server):
            compared[kind] += 1
            if want != got:
                differences[key] = (kind, want, got)

    by_kind = Counter(kind for kind, _, _ in differences.values())
    print(f"\n{len(theirs)} jails compared, {sum(compared.values())} fields compared "
          f"({dict(sorted(compared.items()))}); {len(differences)} differences "
          f"({dict(sorted(by_kind.items()))})")
    for key, (_, want, got) in sorted(differences.items()):
        print(f"- `{key}`\n    fail2ban: {want!r}\n    banish:   {got!r}")

    gaps = known_gaps()
    unexplained = [k for k in differences if not any(fnmatch.fnmatchcase(k, g) for g in gaps)]
    stale = [g for g in gaps if not any(fnmatch.fnmatchcase(k, g) for k in differences)]
    assert not unexplained, "differences not in KNOWN_GAPS.md:\n" + "\n".join(
        f"- `{k}` fail2ban {differences[k][1]!r}, banish {differences[k][2]!r}"
        for k in sorted(unexplained))
    assert not stale, "KNOWN_GAPS.md lists dump gaps that no longer occur:\n" + "\n".join(
        gaps[g] for g in sorted(stale))
