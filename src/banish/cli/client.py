"""The CLI's end of the control socket: connect, send, render.

Owns connecting to the daemon (and saying in one line why it could not), sending requests
(bulk address lists in bounded slices), and printing answers: ``--json`` prints the daemon's
result unchanged; otherwise compact fail2ban-like trees and tables, or fail2ban-client's own
lines where the request's ``view`` asks for them. Must not interpret commands beyond that:
what a command means is the daemon's business, how it is spelled and shaped is
``banish.protocol``'s.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TextIO

from ..errors import USAGE_EXIT, ConfigError
from ..protocol import (
    STDIN,
    CommandError,
    DaemonUnavailable,
    Request,
    is_address,
    merge_results,
    parse_response,
    split,
)

__all__ = ["DEFAULT_TIMEOUT", "Client", "execute", "read_addresses", "render"]

# A reload of many jails or a ban of 100k addresses takes seconds; a daemon that has not
# answered in two minutes is stuck, and the admin should hear so rather than wait forever.
DEFAULT_TIMEOUT = 120.0


class Client:
    """One connection to the daemon; requests are answered in order on it."""

    def __init__(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(_why(self.path, exc)) from None
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, request: Request) -> Any:
        """The daemon's result; CommandError when it refuses, DaemonUnavailable when it
        vanishes or does not answer within the timeout."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        try:
            # MSG_NOSIGNAL: the CLI keeps SIGPIPE at its default (for `| head`), and a daemon
            # that hung up must be a message below, not a silent death by signal.
            self._sock.sendall(request.encode(), socket.MSG_NOSIGNAL)
        except TimeoutError:
            raise DaemonUnavailable(f"the daemon on {self.path} stopped reading requests "
                                    f"(no progress in {self.timeout:g} s)") from None
        except OSError:
            # The daemon hung up on us; it usually said why first (a refused uid, a request
            # over the size limit), so read that before reporting the hang-up.
            pass
        try:
            line = self._file.readline()
        except TimeoutError:
            raise DaemonUnavailable(f"no answer from the daemon on {self.path} within "
                                    f"{self.timeout:g} s") from None
        except OSError as exc:
            raise DaemonUnavailable(f"the connection to the daemon on {self.path} failed: "
                                    f"{exc.strerror or exc}") from None
        if not line:
            raise DaemonUnavailable(f"the daemon on {self.path} closed the connection without "
                                    "answering (did it stop or crash?)")
        return parse_response(line)


def _why(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"banish is not running: no control socket at {path} (choose one with --socket)"
    if isinstance(exc, ConnectionRefusedError):
        return (f"banish is not running: nothing listens on {path} (a stale socket left by a "
                "stopped daemon)")
    if isinstance(exc, PermissionError):
        return (f"permission denied on control socket {path}: it is root-only, so run this as "
                "root (the daemon may well be running)")
    if isinstance(exc, TimeoutError):
        return f"the daemon on {path} does not accept connections (is it stuck?)"
    return f"cannot reach banish on {path}: {exc.strerror or exc}"


def read_addresses(stream: TextIO) -> list[str]:
    """One address per line; blank lines and ``#`` comments skipped. Every line is checked
    before anything is sent, so a bad line 90,000 does not leave half a list applied."""
    ips: list[str] = []
    for number, raw in enumerate(stream, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if not is_address(text):
            raise ConfigError(f"not an IP address or network: {text!r}", file="<stdin>",
                              line=number)
        ips.append(text)
    return ips


def _send_all(client: Client, request: Request, stdin: TextIO) -> Any:
    ips = request.args.get("ips")
    if ips != [STDIN]:
        return client.call(request)
    addresses = read_addresses(stdin)
    if not addresses:  # an empty pipe (grep found nothing) is not an error
        return {"banned": 0, "already": 0} if request.cmd == "ban" else \
            {"unbanned": 0, "not_banned": []}
    results: list[Any] = []
    done = 0
    for part in split(request, addresses):
        try:
            results.append(client.call(part))
        except CommandError as exc:
            if not done:
                raise
            raise CommandError(f"{exc} (the first {done} of {len(addresses)} addresses were "
                               "already applied)") from None
        done += len(part.args["ips"])
    return merge_results(request.cmd, results)


def execute(request: Request, *, path: str, as_json: bool, stdin: TextIO, stdout: TextIO,
            timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time) -> int:
    """Run one CLI verb against the daemon; the exit status (1: ``banned IP`` found none)."""
    with Client(path, timeout=timeout) as client:
        result = _send_all(client, request, stdin)
    if as_json:
        stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        text = render(request, result, clock())
        if text:
            stdout.write(text + "\n")
    if request.cmd == "banned" and request.args.get("ip") and not result:
        return 1
    if request.cmd == "reload" and isinstance(result, dict) and result.get("skipped"):
        # Applied, but not everywhere: a script must not take it for a clean reload.
        for skipped in result["skipped"]:
            print(f"banish: reload: jail {skipped['jail']}: {skipped['error']}", file=sys.stderr)
        return USAGE_EXIT
    return 0


# -- human output -------------------------------------------------------------------------

def render(request: Request, result: Any, now: float) -> str:
    """The human form of a result; ``now`` makes "time left" testable."""
    cmd, args = request.cmd, request.args
    if cmd == "status":
        if args.get("fleet"):
            return _fleet_status(result["fleet"], now)
        return _jail_status(result) if args.get("jail") else _status(result)
    if cmd == "banned":
        if request.view:
            return _fail2ban_bans(result, with_time=request.view == "with-time")
        if not result:
            ip = args.get("ip")
            where = f" in {args['jail']}" if args.get("jail") else ""
            return f"{ip} is not banned{where}" if ip else f"no active bans{where}"
        return _banned(result, now)
    if cmd == "ban":
        return f"banned {result['banned']} in {args['jail']}, {result['already']} already banned"
    if cmd == "unban":
        text = f"unbanned {result['unbanned']}"
        if result.get("fleet_wide"):
            text += f" ({result['fleet_wide']} lifted on every node of the fleet too)"
        if result.get("not_banned"):
            text += f"; not banned: {' '.join(result['not_banned'])}"
        return text
    if cmd == "reload":
        return f"reloaded; jails: {', '.join(result.get('jails', [])) or '(none)'}"
    if cmd in ("get", "set"):
        return _value(result.get("value") if isinstance(result, dict) else result)
    return _value(result)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    if value is None:
        return ""
    return str(value)


def _status(result: dict[str, Any]) -> str:
    jails = result.get("jails", [])
    lines = ["Status",
             f"|- Number of jail:\t{result.get('jail_count', len(jails))}",
             f"`- Jail list:\t{', '.join(jails)}"]
    summary = result.get("summary") or []
    if summary:
        rows = [[s["jail"], s["currently_failed"], s["total_failed"], s["currently_banned"],
                 s["total_banned"]] for s in summary]
        lines += ["", _table(["JAIL", "FAILED", "TOTAL FAILED", "BANNED", "TOTAL BANNED"],
                             rows, numeric={1, 2, 3, 4})]
    problems = [f"jail {s['jail']} skipped: {s['error']}" for s in result.get("skipped") or []]
    problems += [f"firewall {f['backend']} failing (bans retried): {f['error']}"
                 for f in result.get("firewall_errors") or []]
    problems += [f"jail {e['jail']}: {e['path']}: {e['message']}"
                 for e in result.get("file_errors") or []]
    if result.get("store_backlog"):
        problems.append(f"{result['store_backlog']} ban(s) enforced but waiting for the store "
                        f"({result.get('store_error') or 'cannot write'})")
    if result.get("failed_bans"):
        problems.append(f"{result['failed_bans']} ban(s) not yet in the firewall (retried)")
    for sub in result.get("subscribers") or []:
        if sub.get("queued") or sub.get("dropped") or sub.get("errors"):
            problems.append(f"subscriber {sub['name']}: {sub['queued']} queued, "
                            f"{sub['dropped']} dropped, {sub['errors']} errors"
                            + (f" (last: {sub['last_error']})" if sub.get("last_error") else ""))
    notes = result.get("notifications") or []
    if notes:
        lines += ["", "Notifications:"] + [
            f"  {n['name']} ({n['kind'] or 'not configured'}): {n['pending']} waiting"
            + (f", {n['sent']} sent in {n['messages']} message(s)" if "sent" in n else "")
            for n in notes]
    problems += [f"notify {n['name']}: {n['pending']} waiting, {n['failures']} failed "
                 f"attempt(s), next in {n['retry_in']:.0f} s (last: {n['last_error']})"
                 for n in notes if n.get("failures")]
    names = {n["name"]: n for n in result.get("names") or []}
    for n in names.values():
        if n.get("error"):
            kept = ", ".join(n["addresses"]) or "no address yet"
            problems.append(f"host name {n['name']}: {n['error']} (keeping: {kept})")
    for service in result.get("friends") or []:
        ports = ",".join(f"{p[0]}:{p[1]}" if isinstance(p, list) else str(p)
                         for p in service["ports"])
        lines += ["", f"Friends-only {service['name']} ({service['protocol']} {ports}):"]
        for friend in service["friends"]:
            known = names.get(friend)
            if known is None:
                lines.append(f"  {friend}")
                continue
            when = (datetime.fromtimestamp(known["resolved_at"]).isoformat(timespec="seconds")
                    if known.get("resolved_at") else "never")
            lines.append(f"  {friend} = {', '.join(known['addresses']) or '(none)'} "
                         f"(resolved {when})")
    if problems:
        lines += ["", "Problems:", *(f"  {p}" for p in problems)]
    return "\n".join(lines)


def _fleet_status(f: dict[str, Any], now: float) -> str:
    state = "connected" if f["connected"] else f"NOT connected ({f['error'] or 'connecting'})"
    lines = [f"Fleet node {f['node']}: {state}", f"|- Database:\t{f['database']}",
             f"|- Queued to send:\t{f['queued']} (sent {f['sent']}, received {f['received']}, "
             f"refused {f['refused']})"]
    origins = ", ".join(f"{n} {c}" for n, c in sorted(f["bans_by_origin"].items())) or "none"
    lines.append(f"|- Active bans by origin:\t{origins}")
    nodes = f.get("nodes") or []
    lines.append(f"`- Nodes:\t{len(nodes)}")
    if nodes:
        rows = [[n.get("node", ""), n.get("version", ""), f"{n.get('last_seen_ago', '')}s ago",
                 n.get("lag_events", ""), n.get("queued", "")] for n in nodes]
        lines += ["", _table(["NODE", "VERSION", "LAST SEEN", "UNREAD", "QUEUED"], rows,
                             numeric={3, 4})]
    return "\n".join(lines)


def _jail_status(s: dict[str, Any]) -> str:
    filt = [f"Currently failed:\t{s['currently_failed']}", f"Total failed:\t{s['total_failed']}"]
    if s.get("files"):
        filt.append(f"File list:\t{' '.join(s['files'])}")
    if s.get("file_errors"):
        errors = "; ".join(f"{e['path']}: {e['message']}" for e in s["file_errors"])
        filt.append(f"File errors:\t{errors}")
    filt.append(f"Backend:\t{s.get('backend', '')}")
    if s.get("reload_error"):
        filt.append(f"Reload error:\t{s['reload_error']}")
    acts = [f"Currently banned:\t{s['currently_banned']}", f"Total banned:\t{s['total_banned']}",
            f"Banned IP list:\t{' '.join(s.get('banned', []))}"]
    return "\n".join([f"Status for the jail: {s['jail']}", "|- Filter", *_branch(filt, "|  "),
                      "`- Actions", *_branch(acts, "   ")])


def _branch(items: Sequence[str], indent: str) -> list[str]:
    return [f"{indent}{'`' if i == len(items) - 1 else '|'}- {item}"
            for i, item in enumerate(items)]


def _banned(rows: Sequence[dict[str, Any]], now: float) -> str:
    table = []
    for r in rows:
        expires = r.get("expires_at")
        if expires is None:
            until, left = "never", "permanent"
        else:
            until, left = _when(expires), _duration(expires - now)
        table.append([r["jail"], r["ip"], _when(r["banned_at"]), until, left,
                      r.get("origin") or "here"])
    header = ["JAIL", "ADDRESS", "BANNED AT", "EXPIRES AT", "LEFT", "ORIGIN"]
    if not any(r.get("origin") for r in rows):  # one host, no imports: nothing to tell
        header.pop()
        table = [row[:-1] for row in table]
    return _table(header, table, numeric={4})


_END_OF_TIME = "9999-12-31 23:59:59"
"""Where fail2ban-client says a permanent ban ends."""


def _fail2ban_bans(rows: Sequence[dict[str, Any]], *, with_time: bool) -> str:
    """``fail2ban-client get JAIL banip [--with-time]`` to the character, so scripts written
    for it keep working: ordered by the end of the ban; addresses on one line, or a line
    each, ``IP`` space tab ``START + BANTIME = END`` in local time."""
    ordered = sorted(rows, key=lambda r: math.inf if r["expires_at"] is None else r["expires_at"])
    if not with_time:
        return " ".join(r["ip"] for r in ordered)
    return "\n".join(
        f"{r['ip']} \t{_stamp(r['banned_at'])} + {int(r['bantime'])} = "
        f"{_END_OF_TIME if r['expires_at'] is None else _stamp(r['expires_at'])}"
        for r in ordered)


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    if seconds <= 0:
        return "expiring"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = []
    for row in cells:
        parts = [c.rjust(w) if i in numeric else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)
