"""``banish scan``: which addresses would the configured jails ban in these logs? (what-if)

No daemon, no root, no firewall: the same matcher and the same ``core.Jail`` the daemon runs,
fed with the log's own time as "now", so ``findtime`` windows and ban lengths play out as they
would have. A jail reads its ``logpath``; LOG arguments replace it for every selected jail.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import ConfigError
from ..paths import default_config_dir
from .logfile import chunks_with_candidates

if TYPE_CHECKING:  # the loader pulls in the action machinery: import it only when scanning
    from ..config.loader import JailConfig

_PROGRESS_MIN_BYTES = 32 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", metavar="LOG", nargs="*", help="log files (default: each jail's logpath)")
    p.add_argument("--config", metavar="DIR", help="config directory (default: /etc/banish or "
                   "the packaged defaults)")
    p.add_argument("--jail", metavar="NAME", action="append", default=[],
                   help="scan with this jail only (repeatable; default: all enabled jails)")
    p.add_argument("--maxretry", metavar="N", help="override every jail's maxretry")
    p.add_argument("--findtime", metavar="TIME", help="override every jail's findtime (10m, 1h)")
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


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def scan_jail(jail: JailConfig, files: list[str], progress: TextIO | None) -> JailReport:
    from ..core.jail import Jail
    from ..match.chunks import ChunkMatcher
    from ..match.filter import CompiledFilter

    report = JailReport(jail.name, files)
    flt = CompiledFilter(jail.filter, logtimezone=jail.options.get("logtimezone") or None)
    core = Jail(jail.settings)
    now = 0.0
    for path in files:
        if not os.path.isfile(path):
            report.missing.append(path)
            continue
        matcher = ChunkMatcher(flt)
        size = os.path.getsize(path)
        show = progress is not None and size >= _PROGRESS_MIN_BYTES
        done = 0
        for chunk, found in chunks_with_candidates(path, matcher.prescanner):
            done += len(chunk)
            # Time flows with the log: "now" is the newest failure seen so far.
            for outcome in matcher.feed(chunk, now or 0.0, found):
                hit = outcome.result.failure
                if hit is None or hit.fid is None:
                    continue
                when = hit.time if hit.time is not None else now
                now = max(now, when)
                report.failures += 1
                report.offenders[hit.fid] += 1
                report.first = when if report.first is None else min(report.first, when)
                report.last = when if report.last is None else max(report.last, when)
                result = core.feed(hit.to_failure(when), now)
                if result.decision is not None:
                    report.bans.append({"jail": jail.name, "ip": result.decision.address,
                                        "time": _iso(result.decision.time),
                                        "failures": result.decision.failures})
            if show and progress is not None:
                progress.write(f"\r{jail.name}: {path} {100 * done // max(size, 1):3d}%")
                progress.flush()
        if show and progress is not None:
            progress.write("\n")
        report.lines += matcher.lines_seen
    return report


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ..config.loader import load_config
    from ..config.values import parse_int, parse_positive_duration

    out = out or sys.stdout
    config = load_config(args.config or default_config_dir(),
                         only=set(args.jail) if args.jail else None,
                         include_disabled=bool(args.jail))
    jails = list(config.jails)
    if not jails:
        raise ConfigError("no enabled jail to scan with (use --jail NAME)")
    overrides: dict[str, Any] = {}
    if args.maxretry:
        overrides["maxretry"] = parse_int(args.maxretry, "--maxretry", minimum=1)
    if args.findtime:
        overrides["findtime"] = parse_positive_duration(args.findtime, "--findtime")
    progress = sys.stderr if sys.stderr.isatty() and not args.json else None
    reports = []
    for jail in jails:
        if overrides:
            jail = replace(jail, settings=replace(jail.settings, **overrides))
        if args.logs:
            files = list(args.logs)
        else:
            files = sorted({p for lp in jail.settings.logpath for p in glob.glob(lp.path)})
        reports.append(scan_jail(jail, files, progress))
    if args.json:
        _print_json(out, reports, args.top)
    else:
        _print_human(out, reports, args.top)
    return 0


def _print_json(out: TextIO, reports: list[JailReport], top: int) -> None:
    doc = {
        "bans": [b for r in reports for b in r.bans],
        "jails": [{
            "jail": r.jail, "files": r.files, "missing": r.missing, "lines": r.lines,
            "failures": r.failures, "bans": len(r.bans), "addresses": len(r.offenders),
            "first": _iso(r.first), "last": _iso(r.last),
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
        if r.offenders:
            w("  top offenders:\n")
            for ip, n in r.offenders.most_common(top):
                w(f"    {n:>8}  {ip}\n")
        if r.bans:
            w("  bans:\n")
            for b in r.bans:
                w(f"    {b['time']}  {b['ip']}  ({b['failures']} failures)\n")
