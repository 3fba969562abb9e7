"""The control protocol: ONE command table shared by the CLI and the daemon.

This module is over 600 lines because it is the ONE command table: splitting the table from
its wire checks would give two places that must agree, which is what it exists to prevent.

Owns the list of control commands (name, CLI arguments, ``--help`` text, wire arguments,
result shape), the translation of fail2ban-client spellings into those commands, the wire
format, request validation and the errors a client reports. Must not do I/O: the server
(``daemon/control.py``) and the client (``cli/client.py``) own the sockets; this module only
turns bytes into checked values and back, so both ends agree by construction.

Wire format: newline-delimited JSON over a ``SOCK_STREAM`` Unix socket, any number of requests
per connection, answered in order. Never pickle: the socket is root-only, but a parser that
cannot run code keeps a bug in a client from becoming code execution in the daemon. Whatever
else arrives (nesting past the recursion limit, NaN, a 5,000-digit number, invalid UTF-8, a
string argument over MAX_WORD) is a ProtocolError: one short line back, never a traceback.

    request   {"v": 1, "cmd": "status", "args": {"jail": "sshd"}}
    response  {"ok": true, "result": ...}  or  {"ok": false, "error": "one-line message"}

Results (the daemon's handler returns exactly these; times are epoch seconds):

    ping          "pong"
    stop          "stopping"                  the daemon stops after answering
    status        {"jails": [name], "jail_count": n,
                   "summary": [{"jail", "currently_failed", "total_failed",
                                "currently_banned", "total_banned"}]}
    status JAIL   {"jail", "currently_failed", "total_failed", "currently_banned",
                   "total_banned", "banned": [address], "files": [path],
                   "file_errors": [{"path", "message"}], "backend"}
    ban           {"banned": n, "already": n}
    unban         {"unbanned": n, "not_banned": [address]}
    banned        [{"jail", "ip", "banned_at", "expires_at" (null: permanent), "bantime"}]
    reload        {"jails": [name], "skipped": [{"jail", "error"}]}
    get           {"jail" (null: a daemon setting), "param", "value"}  value is any JSON value
                  (lists for logpath ...); whole numbers are integers: 600, never 600.0
    set           {"jail", "param", "value"}  value as ``get`` shows it after the change

fail2ban-client spellings accepted on the banish command line (translated here, so the daemon
only ever sees the canonical commands):

    set JAIL banip IP...      -> ban JAIL IP...
    set JAIL unbanip IP...    -> unban JAIL IP...
    get JAIL banned           -> banned --jail JAIL   (banish's table)
    get JAIL banip            -> banned --jail JAIL   shown as fail2ban shows it: addresses
                                 on one line, or with ``--with-time`` a line each,
                                 ``IP TAB START + BANTIME = END``; ordered by end of ban
    reload [--unban] [JAIL], get loglevel|logtarget|dbfile|dbpurgeage, set loglevel LEVEL,
    set JAIL addignoreip|delignoreip IP|NET|NAME..., unban --all, unban IP...,
    status [JAIL], ping, stop, get JAIL PARAM, set JAIL PARAM VALUE   -> the same banish verb

Not supported (deliberately): ``reload --restart``/``--if-exists``, ``set logtarget``/``dbfile``
/``dbpurgeage`` (banish.conf and a reload or restart), ``get JAIL banip SEP``, status flavours
(``status JAIL cymru``), ``banned`` with several addresses, ``add``/``start``/``stop`` of a
single jail, ``--report-absent``.

"""

from __future__ import annotations

import ipaddress
import json
import os
import reprlib
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import USAGE_EXIT, BanishError, ConfigError

__all__ = [
    "BANNED_KEYS",
    "CHUNK",
    "COMMANDS",
    "DEFAULT_SOCKET",
    "GLOBAL_GET",
    "GLOBAL_SET",
    "IGNORE_LIST_PARAMS",
    "JAIL_STATUS_KEYS",
    "MAX_REQUEST",
    "MAX_WORD",
    "STATUS_KEYS",
    "STDIN",
    "SUMMARY_KEYS",
    "VERSION",
    "Arg",
    "Command",
    "CommandError",
    "DaemonUnavailable",
    "Field",
    "ProtocolError",
    "Request",
    "View",
    "command",
    "encode_error",
    "encode_result",
    "is_address",
    "merge_results",
    "parse_request",
    "parse_response",
    "socket_path",
    "split",
]

VERSION = 1
DEFAULT_SOCKET = "/run/banish/banish.sock"
SOCKET_ENV = "BANISH_SOCKET"
# Bulk bans are the big requests: 64 MiB holds a few million addresses in one line, which is
# far above what the CLI sends (it splits stdin into CHUNK-sized requests) yet bounds memory.
MAX_REQUEST = 64 * 1024 * 1024
MAX_WORD = 4096
"""Characters in one string argument (a jail, a setting's value, one address): far above any
real one, yet no answer ever echoes megabytes back, and a number written in it stays below
Python's int-digit limit (4,300) for whatever parses it."""
CHUNK = 100_000
"""Addresses per request: a 100k blocklist is one store commit, its firewall slices overlapping
the commit (bench/bans.py)."""
STDIN = "-"

SUMMARY_KEYS = frozenset({"jail", "currently_failed", "total_failed", "currently_banned",
                          "total_banned"})
STATUS_KEYS = frozenset({"jails", "jail_count", "summary", "skipped", "firewall_errors",
                         "failed_bans", "store_backlog", "store_error", "file_errors",
                         "subscribers", "friends", "names", "notifications"})
JAIL_STATUS_KEYS = SUMMARY_KEYS | {"banned", "files", "file_errors", "backend"}
BANNED_KEYS = frozenset({"jail", "ip", "banned_at", "expires_at", "bantime", "origin"})


class ProtocolError(BanishError):
    """Bytes on the socket that are not a valid message; the server answers with the text."""

    exit_code = 1


class CommandError(BanishError):
    """The daemon refused a command (unknown jail, bad address ...): a user error."""

    exit_code = USAGE_EXIT


class DaemonUnavailable(BanishError):
    """No daemon answers on the socket; exit 1 so scripts can tell it from a usage error."""

    exit_code = 1


def socket_path(explicit: str | None) -> str:
    """``--socket``, else ``$BANISH_SOCKET``, else the packaged default."""
    return explicit or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def is_address(text: str) -> bool:
    """An IP address or network, as the daemon will accept it; names are not addresses."""
    # inet_pton is ~40x faster than ipaddress and agrees with it on plain addresses; that is
    # what makes checking 100k addresses from stdin cheap. Networks and scoped IPv6 addresses
    # take the slow path.
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except (OSError, ValueError):  # ValueError: an embedded NUL
            pass
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# -- the command table --------------------------------------------------------------------

Kind = Literal["str", "strs", "bool"]


@dataclass(frozen=True, slots=True)
class Field:
    """One wire argument. Absent optional ones reach the handler as None (False for bool), so
    a handler never has to guess which keys a client chose to send."""

    name: str
    kind: Kind
    required: bool = False

    @property
    def default(self) -> Any:
        return False if self.kind == "bool" else None


@dataclass(frozen=True, slots=True)
class Arg:
    """One argparse argument, kept as data so the table has no argparse objects in it."""

    flags: tuple[str, ...]
    help: str
    nargs: str | None = None
    metavar: str | None = None
    action: str | None = None


View = Literal["", "addresses", "with-time"]
"""How the CLI shows a result: "" the command's own rendering; "addresses" and "with-time" are
fail2ban-client's two forms of ``get JAIL banip`` (over the result of ``banned``)."""


@dataclass(frozen=True, slots=True)
class Request:
    """A command and its wire arguments; ``view`` stays on the client (never sent), so one
    daemon answer serves every way a user asked for it."""

    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    view: View = ""

    def encode(self) -> bytes:
        return _line({"v": VERSION, "cmd": self.cmd, "args": self.args})


@dataclass(frozen=True, slots=True)
class Command:
    """A verb: how the CLI spells it, what goes on the wire, what comes back."""

    name: str
    summary: str
    description: str
    cli: tuple[Arg, ...]
    fields: tuple[Field, ...]
    result: str
    translate: Callable[[Mapping[str, Any]], Request]


_ECHO = reprlib.Repr()
_ECHO.maxstring, _ECHO.maxother, _ECHO.maxlevel = 80, 80, 2


def _echo(value: Any) -> str:
    """A client's value quoted in an error: bounded in length and depth, whatever was sent."""
    return _ECHO.repr(value)


def _usage(reason: str) -> ConfigError:
    return ConfigError(reason)


def _addresses(values: Sequence[str], verb: str) -> list[str]:
    """Addresses from the command line, checked before anything is sent, so a typo in the
    tenth address does not leave nine applied; ``-`` (stdin) is expanded by the client."""
    ips = list(values)
    if STDIN in ips:
        if len(ips) != 1:
            raise _usage(f"{verb}: '-' (read addresses from stdin) must be the only address")
        return ips
    for ip in ips:
        if not is_address(ip):
            raise _usage(f"{verb}: not an IP address or network: {ip!r}")
    return ips


def _plain(cmd: str, *names: str) -> Callable[[Mapping[str, Any]], Request]:
    def translate(values: Mapping[str, Any]) -> Request:
        return Request(cmd, {n: values.get(n) for n in names})

    return translate


def _ban(values: Mapping[str, Any]) -> Request:
    return Request("ban", {"jail": values["jail"], "ips": _addresses(values["ips"], "ban")})


def _unban(values: Mapping[str, Any]) -> Request:
    targets: list[str] = list(values.get("targets") or [])
    if values.get("all"):
        if len(targets) > 1:
            raise _usage("unban --all takes at most a jail, no addresses")
        return Request("unban", {"ips": None, "jail": targets[0] if targets else None,
                                 "all": True})
    jail = None
    if targets and targets[0] != STDIN and not is_address(targets[0]):
        jail, targets = targets[0], targets[1:]
    if not targets:
        raise _usage("unban: give one or more addresses (or '-' for stdin), or --all")
    return Request("unban", {"ips": _addresses(targets, "unban"), "jail": jail, "all": False})


def _banned(values: Mapping[str, Any]) -> Request:
    ip = values.get("ip")
    if ip is not None and not is_address(ip):
        raise _usage(f"banned: not an IP address or network: {ip!r}")
    return Request("banned", {"ip": ip, "jail": values.get("jail")})


# fail2ban-client's ``set JAIL banip ...`` family: PARAM names that are really other commands.
_SET_ALIASES = {"banip": "ban", "unbanip": "unban"}
_BAN_LISTS: dict[str, View] = {"banned": "", "banip": "addresses"}
"""``get JAIL PARAM`` spellings of ``banned --jail JAIL``, and how each is shown."""

GLOBAL_GET = ("loglevel", "logtarget", "dbfile", "dbpurgeage")
"""Daemon settings ``get`` shows without a jail (fail2ban's global ``get`` names)."""
GLOBAL_SET = ("loglevel",)
"""Daemon settings ``set`` changes at run time (until the next reload, as in fail2ban)."""
IGNORE_LIST_PARAMS = ("addignoreip", "delignoreip")
"""``set JAIL`` params taking several entries (sent as one space-separated value, which is
how ``ignoreip`` itself is written)."""


def _get(values: Mapping[str, Any]) -> Request:
    jail, param = values.get("jail"), values["param"]
    if jail in GLOBAL_GET:  # the daemon's names come first, as in fail2ban's dispatcher
        raise _usage(f"get {jail}: a daemon setting takes no further words, got {param!r}")
    with_time = bool(values.get("with_time"))
    if with_time and (jail is None or param != "banip"):
        raise _usage("get: --with-time goes with 'get JAIL banip'")
    if jail is None:
        if param not in GLOBAL_GET:
            raise _usage(f"get {param}: expected JAIL PARAM, or a daemon setting "
                         f"({', '.join(GLOBAL_GET)})")
        return Request("get", {"jail": None, "param": param})
    if param in _BAN_LISTS:
        view: View = "with-time" if with_time else _BAN_LISTS[param]
        return Request("banned", {"ip": None, "jail": jail}, view)
    return Request("get", {"jail": jail, "param": param})


def _set(values: Mapping[str, Any]) -> Request:
    jail, param, rest = values.get("jail"), values["param"], list(values["value"])
    if jail in GLOBAL_GET:  # 'set loglevel A B': argparse took loglevel for the jail
        jail, param, rest = None, jail, [param, *rest]
    if jail is None and param not in GLOBAL_SET:
        why = ("read-only at run time (edit banish.conf: a reload applies logtarget and "
               "dbpurgeage, a restart dbfile)" if param in GLOBAL_GET else
               f"expected JAIL PARAM VALUE, or a daemon setting ({', '.join(GLOBAL_SET)}) and "
               "its value")
        raise _usage(f"set {param}: {why}")
    words = f"set {param}" if jail is None else f"set {jail} {param}"
    alias = _SET_ALIASES.get(param)
    if alias == "ban":
        return Request("ban", {"jail": jail, "ips": _addresses(rest, words)})
    if alias == "unban":
        return Request("unban", {"ips": _addresses(rest, words), "jail": jail, "all": False})
    if param in IGNORE_LIST_PARAMS:
        return Request("set", {"jail": jail, "param": param, "value": " ".join(rest)})
    if len(rest) != 1:
        raise _usage(f"{words}: expected one value, got {len(rest)}")
    return Request("set", {"jail": jail, "param": param, "value": rest[0]})


def _reload(values: Mapping[str, Any]) -> Request:
    # The SSH session this runs in (if any): a friends-only service must not cut it off.
    session = os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT") or None
    return Request("reload", {"jail": values.get("jail"), "unban": bool(values.get("unban")),
                              "i_know": bool(values.get("i_know")), "session": session})


_JAIL_OPT = Arg(("jail",), "jail name", nargs="?", metavar="JAIL")
_SETTING_OF = Arg(("jail",), "jail name (none: a daemon setting)", nargs="?", metavar="JAIL")

COMMANDS: tuple[Command, ...] = (
    Command(
        "status", "show jails, or one jail's counters, files and banned addresses",
        "Without JAIL: the jails and a line of counters each. With JAIL: its failure and ban "
        "counters, the files (or journal) it reads and the addresses it has banned. --fleet: "
        "the fleet (nodes, last seen, queued events, bans by origin).",
        (_JAIL_OPT, Arg(("--fleet",), "show the fleet instead", action="store_true")),
        (Field("jail", "str"), Field("fleet", "bool")),
        '{"jails": [...], "jail_count": n, "summary": [{"jail", "currently_failed", '
        '"total_failed", "currently_banned", "total_banned"}]}\n'
        'with JAIL: {"jail", "currently_failed", "total_failed", "currently_banned", '
        '"total_banned", "banned": [...], "files": [...], "file_errors": [{"path", '
        '"message"}], "backend"}\n'
        'with --fleet: {"fleet": {"node", "connected", "queued", "nodes": [...], ...}}',
        _plain("status", "jail", "fleet"),
    ),
    Command(
        "ban", "ban addresses in a jail",
        "Ban addresses or networks in JAIL for the jail's bantime. '-' reads addresses from "
        "stdin, one per line (blank lines and # comments skipped), sent in batches. "
        "fail2ban spelling: banish set JAIL banip IP...",
        (Arg(("jail",), "jail name", metavar="JAIL"),
         Arg(("ips",), "addresses or networks, or '-' for stdin", nargs="+", metavar="IP")),
        (Field("jail", "str", required=True), Field("ips", "strs", required=True)),
        '{"banned": n, "already": n}',
        _ban,
    ),
    Command(
        "unban", "lift bans (in one jail or everywhere)",
        "Unban addresses in JAIL, or in every jail when no JAIL is given (the first word is "
        "a jail when it is not an address). '-' reads addresses from stdin. --all lifts every "
        "ban (of JAIL). fail2ban spelling: banish set JAIL unbanip IP...",
        (Arg(("--all",), "lift every ban (of JAIL when given)", action="store_true"),
         Arg(("targets",), "[JAIL] then addresses or networks, or '-' for stdin", nargs="*",
             metavar="[JAIL] IP")),
        (Field("ips", "strs"), Field("jail", "str"), Field("all", "bool")),
        '{"unbanned": n, "not_banned": [...]} (+ "fleet_wide": n, lifted on every node too)',
        _unban,
    ),
    Command(
        "banned", "where an address is banned, and until when",
        "List active bans (of IP, of --jail JAIL) with their start and expiry in local time "
        "and the time left. Exit status 1 when IP is given and not banned anywhere. "
        "fail2ban spelling: banish get JAIL banned",
        (Arg(("ip",), "address or network to look up", nargs="?", metavar="IP"),
         Arg(("--jail",), "only bans of this jail", metavar="JAIL")),
        (Field("ip", "str"), Field("jail", "str")),
        '[{"jail", "ip", "banned_at", "expires_at" (null: permanent), "bantime", "origin" '
        '("" this host, else the fleet node or "fail2ban")}]',
        _banned,
    ),
    Command(
        "reload", "re-read the configuration (all jails, or one)",
        "Re-read the configuration and swap in changed jails; bans of jails that stay are "
        "kept. A broken configuration is refused and the running one stays. --unban also "
        "lifts every ban (of JAIL only, when given), as fail2ban-client's reload --unban. "
        "A reload ends run-time changes (set ...): the configuration's values return.",
        (Arg(("--unban",), "lift the bans (of JAIL when given) as well", action="store_true"),
         Arg(("--i-know",), "apply a friends-only service even if it cuts off this SSH "
             "session", action="store_true"),
         _JAIL_OPT),
        (Field("jail", "str"), Field("unban", "bool"), Field("i_know", "bool"),
         Field("session", "str")),
        '{"jails": [...], "skipped": [{"jail", "error"}]}',
        _reload,
    ),
    Command(
        "stop", "stop the daemon",
        "Ask the daemon to stop; it answers first, then shuts down.",
        (), (), '"stopping"', _plain("stop"),
    ),
    Command(
        "ping", "check that the daemon answers",
        "Exit status 0 and 'pong' when the daemon answers, 1 when it is not running.",
        (), (), '"pong"', _plain("ping"),
    ),
    Command(
        "metrics", "print the daemon's Prometheus metrics",
        "The daemon's metrics in the Prometheus text format (what `banish web` serves on "
        "/metrics and `metricsfile =` writes for node_exporter): lines read, failures, bans "
        "and unbans by jail, active bans, match and firewall durations, queues, errors.",
        (), (), '"# HELP ... (Prometheus text format)"', _plain("metrics"),
    ),
    Command(
        "get", "show a jail setting, or a daemon setting",
        "Show a setting of a running jail (maxretry, findtime, bantime, maxmatches, logpath, "
        "ignoreip, failregex, ignoreregex, datepattern, journalmatch, actions, ...) or, "
        "without JAIL, of the daemon (loglevel, logtarget, dbfile, dbpurgeage). "
        "'get JAIL banned' shows the jail's bans as 'banned --jail JAIL' does; 'get JAIL banip' "
        "prints them as fail2ban-client does, on one line, or with --with-time one line each: "
        "address, start, bantime and end in local time.",
        (_SETTING_OF,
         Arg(("param",), "setting name", metavar="PARAM"),
         Arg(("--with-time",), "with 'get JAIL banip': each ban's start, bantime and end",
             action="store_true")),
        (Field("jail", "str"), Field("param", "str", required=True)),
        '{"jail" (null: daemon setting), "param", "value"}\n'
        "get JAIL banned|banip: as banned",
        _get,
    ),
    Command(
        "set", "change a jail setting, or the log level, at run time",
        "Change a setting of a running jail until the next reload: maxretry, findtime, "
        "bantime (failure windows start over), addignoreip / delignoreip IP|NET|NAME... "
        "(windows kept; the kernel's allow set follows at once). Without JAIL: 'set loglevel LEVEL' (CRITICAL, "
        "ERROR, WARNING, NOTICE, INFO, DEBUG or a number) until the next reload. "
        "fail2ban spellings: 'set JAIL banip IP...', 'set JAIL unbanip IP...'.",
        (_SETTING_OF,
         Arg(("param",), "setting name (or banip / unbanip)", metavar="PARAM"),
         Arg(("value",), "new value (or addresses for banip / unbanip, entries for "
             "addignoreip / delignoreip)", nargs="+", metavar="VALUE")),
        (Field("jail", "str"), Field("param", "str", required=True),
         Field("value", "str", required=True)),
        '{"jail" (null: daemon setting), "param", "value" (as get shows it now)}',
        _set,
    ),
)

_BY_NAME = {c.name: c for c in COMMANDS}


def command(name: str) -> Command:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ProtocolError(f"unknown command {_echo(name)} (commands: "
                            f"{', '.join(sorted(_BY_NAME))})") from None


# -- bulk requests ------------------------------------------------------------------------

def split(request: Request, ips: Sequence[str], size: int = CHUNK) -> Iterator[Request]:
    """The same request over successive slices of ``ips``: bounded messages for any count."""
    for start in range(0, len(ips), size):
        yield Request(request.cmd, {**request.args, "ips": list(ips[start:start + size])})


def merge_results(cmd: str, results: Sequence[Any]) -> Any:
    """One answer for a request that was sent in slices, as if it had been sent whole."""
    if len(results) == 1:
        return results[0]
    if cmd == "ban":
        return {"banned": sum(r["banned"] for r in results),
                "already": sum(r["already"] for r in results)}
    if cmd == "unban":
        return {"unbanned": sum(r["unbanned"] for r in results),
                "not_banned": [ip for r in results for ip in r["not_banned"]]}
    raise ValueError(f"{cmd} results cannot be merged")


# -- wire encoding ------------------------------------------------------------------------

def _line(obj: Any) -> bytes:
    # json.dumps escapes control characters inside strings, so the only newline is the
    # terminator: that is what makes the stream self-framing.
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def encode_result(result: Any) -> bytes:
    return _line({"ok": True, "result": result})


def encode_error(message: str) -> bytes:
    return _line({"ok": False, "error": " ".join(str(message).split()) or "error"})


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _load(line: bytes, what: str) -> Any:
    """One message, or ProtocolError. Every way ``json.loads`` refuses bytes is a client's
    mistake: invalid UTF-8, a number over Python's int-digit limit (ValueError), nesting
    deeper than the interpreter's recursion limit (RecursionError: the C scanner stops there,
    long before a 64 MiB line of ``[`` costs anything), and NaN/Infinity, which Python
    accepts but JSON does not."""
    try:
        return json.loads(line, parse_constant=_not_json)
    except RecursionError:
        raise ProtocolError(f"malformed {what}: nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = " ".join(str(exc).split())
        raise ProtocolError(f"malformed {what}: not JSON ({reason})") from None


def _word(value: Any) -> str | None:
    """Why ``value`` is not a usable string argument, or None when it is one."""
    if not isinstance(value, str):
        return "type"
    if len(value) > MAX_WORD:
        return f"too long ({len(value)} characters; at most {MAX_WORD})"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate, sent as "\\ud800"
            return "not valid text (an unpaired surrogate)"
    return None


def _check(cmd: Command, f: Field, value: Any) -> Any:
    if value is None and not f.required and f.kind != "bool":
        return None
    if f.kind == "bool":
        why = None if isinstance(value, bool) else "type"
    elif f.kind == "str":
        why = _word(value)
    elif isinstance(value, list) and (value or not f.required):
        why = next((w for w in map(_word, value) if w is not None), None)
    else:
        why = "type"
    if why == "type":
        want = {"str": "a string", "bool": "true or false",
                "strs": "a non-empty list of strings" if f.required else "a list of strings"}
        raise ProtocolError(f"bad argument {f.name!r} for {cmd.name!r}: expected {want[f.kind]}")
    if why is not None:
        raise ProtocolError(f"bad argument {f.name!r} for {cmd.name!r}: "
                            f"{'an entry ' if f.kind == 'strs' else ''}{why}")
    return value


def parse_request(line: bytes) -> Request:
    """A checked request: known command, known arguments of the right types, defaults filled
    in. Raises ProtocolError with the one line the server sends back."""
    obj = _load(line, "request")
    if not isinstance(obj, dict):
        raise ProtocolError("malformed request: expected a JSON object")
    version = obj.get("v")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {_echo(version)} (this daemon speaks "
                            f"{VERSION})")
    name = obj.get("cmd")
    if not isinstance(name, str):
        raise ProtocolError("malformed request: 'cmd' must be a string")
    cmd = command(name)
    raw = obj.get("args", {})
    if not isinstance(raw, dict):
        raise ProtocolError("malformed request: 'args' must be a JSON object")
    known = {f.name for f in cmd.fields}
    extra = sorted(set(raw) - known)
    if extra:
        raise ProtocolError(f"unexpected argument {_echo(extra[0])} for {name!r}")
    args: dict[str, Any] = {}
    for f in cmd.fields:
        if f.name not in raw:
            if f.required:
                raise ProtocolError(f"missing argument {f.name!r} for {name!r}")
            args[f.name] = f.default
            continue
        args[f.name] = _check(cmd, f, raw[f.name])
    return Request(name, args)


def parse_response(line: bytes) -> Any:
    """The result of a response; a refusal becomes CommandError with the daemon's words."""
    obj = _load(line, "response from the daemon")
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise ProtocolError("malformed response from the daemon: expected {\"ok\": ...}")
    if obj["ok"]:
        return obj.get("result")
    raise CommandError(str(obj.get("error") or "the daemon refused the command"))
