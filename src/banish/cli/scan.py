"""``banish scan``: which addresses would the configured jails ban in these logs? (what-if)

No daemon, no root, no firewall: each jail's ``banish.pipeline`` -- the very code the daemon
runs -- replayed over the log. Dates without a year are placed by the real clock (or ``--now``),
as the daemon places them; ``findtime`` windows, ban lengths, bans lifted when they end, subnet
widening and escalation all play out on the log's own times, as they would have live. Failures
of an address while it is banned are not counted, as in the daemon. Host names are not resolved
and ``ignorecommand`` is not run (both said in the report). A jail reads its ``logpath``; LOG
arguments replace it for every selected jail.
"""

from __future__ import annotations

import argparse
import glob
import heapq
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import ConfigError
from ..paths import default_config_dir
from .logfile import chunks_with_candidates

if TYPE_CHECKING:  # the loader and the pipeline are imported only when scanning
    from ..config.loader import JailConfig
    from ..events import Ban

_PROGRESS_MIN_BYTES = 32 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", metavar="LOG", nargs="*", help="log files (default: each jail's logpath)")
    p.add_argument("--config", metavar="DIR", help="config directory (default: /etc/banish or "
                   "the packaged defaults)")
    p.add_argument("--jail", metavar="NAME", action="append", default=[],
                   help="scan with this jail only (repeatable; default: all enabled jails)")
    p.add_argument("--maxretry", metavar="N", help="override every jail's maxretry")
    p.add_argument("--findtime", metavar="TIME", help="override every jail's findtime (10m, 1h)")
    p.add_argument("--now", metavar="EPOCH", type=float,
                   help="the time the logs are read at, for dates without a year (default: now)")
    p.add_argument("--top", metavar="N", type=int, default=10, help="top offenders to show")
    p.add_argument("--json", action="store_true", help="one JSON object with bans and totals")


@dataclass
class JailReport:
    jail: str
    files: list[str]
    lines: int = 0
    failures: int = 0
    bans: list[dict[str, Any]] = field(default_factory=list)
    offenders: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None
    missing: list[str] = field(default_factory=list)
    unresolved: int = 0
    """Failures naming a host name, which a daemon with ``usedns`` would resolve."""
    ignorecommand: bool = False


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


class _Replay:
    """The daemon's ban book, played on the log's clock: bans end when their time is over."""

    def __init__(self, report: JailReport) -> None:
        from ..core.active import ActiveBans

        self.active = ActiveBans()
        self.report = report
        self._ends: list[tuple[float, str, str]] = []

    def advance(self, now: float) -> None:
        from ..events import BanKey

        ends = self._ends
        while ends and ends[0][0] <= now:
            _, address, jail = heapq.heappop(ends)
            key = BanKey(address, jail)
            ban = self.active.get(key)
            if ban is not None and ban.expires_at is not None and ban.expires_at <= now:
                self.active.remove([key])

    def record(self, bans: Iterable[Ban]) -> None:
        """Bans the pipeline just added to ``active``: their ends, and the report."""
        for b in bans:
            if b.expires_at is not None:
                heapq.heappush(self._ends, (b.expires_at, b.address, b.jail))
            self.report.bans.append({"jail": b.jail, "ip": b.address, "time": _iso(b.banned_at),
                                     "failures": b.failures, "bantime": b.bantime})


def scan_jail(jail: JailConfig, files: list[str], now: float, progress: TextIO | None,
              self_addresses: tuple[str, ...] = ()) -> JailReport:
    from ..addr import canonical_address
    from ..pipeline import Pipeline

    report = JailReport(jail.name, files, ignorecommand=bool(jail.settings.ignorecommand))
    pipeline = Pipeline(jail, self_addresses=self_addresses)
    replay = _Replay(report)
    clock = 0.0  # the log's own time: the newest failure so far
    for path in files:
        if not os.path.isfile(path):
            report.missing.append(path)
            continue
        size = os.path.getsize(path)
        show = progress is not None and size >= _PROGRESS_MIN_BYTES
        done = 0
        for chunk, found in chunks_with_candidates(path, pipeline.matcher.prescanner):
            done += len(chunk)
            for failure in pipeline.failures(chunk, now, found):
                clock = max(clock, failure.time)
                report.failures += 1
                report.offenders[failure.fid] += 1
                report.first = failure.time if report.first is None else min(report.first,
                                                                             failure.time)
                report.last = failure.time if report.last is None else max(report.last,
                                                                           failure.time)
                address = canonical_address(failure.fid)
                if address is None:
                    report.unresolved += 1
                    continue
                if address != failure.fid:
                    failure = replace(failure, fid=address)
                replay.advance(clock)
                replay.record(pipeline.judge(failure, clock, replay.active).bans)
            if show and progress is not None:
                progress.write(f"\r{jail.name}: {path} {100 * done // max(size, 1):3d}%")
                progress.flush()
        if show and progress is not None:
            progress.write("\n")
    report.lines = pipeline.matcher.lines_seen
    return report


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ..config.loader import load_config
    from ..config.values import parse_int, parse_positive_duration
    from ..daemon.hostaddrs import own_addresses

    out = out or sys.stdout
    for path in args.logs:
        if not os.path.isfile(path):
            raise ConfigError("no such file" if not os.path.exists(path) else "not a file",
                              file=path)
    config = load_config(args.config or default_config_dir(),
                         only=set(args.jail) if args.jail else None,
                         include_disabled=bool(args.jail), strict=bool(args.jail))
    jails = list(config.jails)
    for skipped in config.skipped:
        print(f"banish: jail {skipped.name} skipped: {skipped.error}", file=sys.stderr)
    if not jails:
        raise ConfigError("no enabled jail to scan with (use --jail NAME)")
    overrides: dict[str, Any] = {}
    if args.maxretry:
        overrides["maxretry"] = parse_int(args.maxretry, "--maxretry", minimum=1)
    if args.findtime:
        overrides["findtime"] = parse_positive_duration(args.findtime, "--findtime")
    now = args.now if args.now is not None else time.time()
    progress = sys.stderr if sys.stderr.isatty() and not args.json else None
    self_addresses = own_addresses()
    reports = []
    for jail in jails:
        if overrides:
            jail = replace(jail, settings=replace(jail.settings, **overrides))
        if args.logs:
            files = list(args.logs)
        else:
            files = sorted({p for lp in jail.settings.logpath for p in glob.glob(lp.path)}
                           or {lp.path for lp in jail.settings.logpath})
        try:
            reports.append(scan_jail(jail, files, now, progress, self_addresses))
        except ConfigError as exc:
            if args.jail:
                raise exc.located(file=jail.file, section=jail.name) from exc
            print(f"banish: jail {jail.name} skipped: "
                  f"{exc.located(file=jail.file, section=jail.name)}", file=sys.stderr)
    if args.json:
        _print_json(out, reports, args.top)
    else:
        _print_human(out, reports, args.top)
    read_any = any(len(r.missing) < len(r.files) for r in reports)
    return 0 if read_any else 1


def _print_json(out: TextIO, reports: list[JailReport], top: int) -> None:
    doc = {
        "bans": [b for r in reports for b in r.bans],
        "jails": [{
            "jail": r.jail, "files": r.files, "missing": r.missing, "lines": r.lines,
            "failures": r.failures, "bans": len(r.bans), "addresses": len(r.offenders),
            "first": _iso(r.first), "last": _iso(r.last), "unresolved": r.unresolved,
            "top": [{"ip": ip, "failures": n} for ip, n in r.offenders.most_common(top)],
        } for r in reports],
    }
    out.write(json.dumps(doc, indent=None) + "\n")


def _print_human(out: TextIO, reports: list[JailReport], top: int) -> None:
    w = out.write
    for r in reports:
        w(f"Jail {r.jail}: {r.lines} lines, {r.failures} failures from {len(r.offenders)} "
          f"addresses, {len(r.bans)} bans\n")
        if r.first is not None:
            w(f"  time range: {_iso(r.first)} .. {_iso(r.last)}\n")
        for path in r.missing:
            w(f"  missing file: {path}\n")
        if r.unresolved:
            w(f"  {r.unresolved} failures name a host name: not resolved offline\n")
        if r.ignorecommand:
            w("  ignorecommand is not run by scan: its addresses may be counted here\n")
        if r.offenders:
            w("  top offenders:\n")
            for ip, n in r.offenders.most_common(top):
                w(f"    {n:>8}  {ip}\n")
        if r.bans:
            w("  bans:\n")
            for b in r.bans:
                w(f"    {b['time']}  {b['ip']}  ({b['failures']} failures)\n")
