#!/usr/bin/env python3
"""Times `banish regex` on 1 MB hostile lines, for every filter, to catch regex blow-ups.

Owns: the worst-case-input benchmark.  An attacker controls much of what lands in a log line
(user names, URLs, protocol garbage), so a filter whose regex backtracks badly on a long line is
a denial-of-service lever against the daemon.  For each filter this script writes a few 1 MB
lines (one huge token; runs of `a`, digits-and-dots, words, spaces after a plausible syslog
prefix for that filter's daemon; invalid UTF-8; NUL bytes; web-log shaped lines) and times
`banish regex --json FILE FILTER` on each, minus the time of the same command on an empty file
(interpreter start-up, filter compilation).  Target: under 100 ms per hostile line.

Must not: edit filters, or compare against anything but the same filter file.  Filters are
discovered at run time: banish's packaged src/banish/filters/filter.d/*.conf (common.conf and
*-common.conf excluded), and with --fail2ban also /etc/fail2ban/filter.d/*.conf.
"""

from __future__ import annotations

import argparse
import configparser
import datetime as dt
import platform
import random
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import machine  # bench/machine.py (scripts run as bench/NAME.py)
from run_regex import REPO, RESULTS, Banish, find_banish, run_once

PACKAGED = REPO / "src/banish/filters/filter.d"
FAIL2BAN = Path("/etc/fail2ban/filter.d")
MB = 1 << 20
TARGET_MS = 100.0


# web-log shaped hostile lines are the same for every filter
ACCESS = b'192.0.2.1 - - [23/Jan/2024:21:59:59 +0000] "GET /'
ERROR = b"2024/01/23 21:59:59 [error] 812#812: *1 "


@dataclass(frozen=True, slots=True)
class Filter:
    name: str
    config: Path  # the directory holding filter.d/

    @property
    def path(self) -> Path:
        return self.config / "filter.d" / f"{self.name}.conf"


def discover(directory: Path, only: list[str] | None) -> list[Filter]:
    # common.conf and *-common.conf are only included by other filters (no failregex of their own)
    names = sorted(p.stem for p in directory.glob("*.conf")
                   if p.stem != "common" and not p.stem.endswith("-common"))
    if only:
        names = [n for n in names if n in only]
    return [Filter(n, directory.parent) for n in names]


def daemon_for(flt: Filter) -> str:
    """A daemon name the filter's `_daemon` regex accepts, so the prefix regex gets past it.

    Candidates are tried against the `_daemon` value with `re.fullmatch`; a value that is not a
    plain Python regex (interpolations, fail2ban tags) falls back to its leading literal.
    """
    cp = configparser.RawConfigParser(strict=False)
    try:
        cp.read(flt.path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return flt.name
    value = next((cp.get(s, "_daemon") for s in ("Definition", "DEFAULT", "INCLUDES")
                  if cp.has_option(s, "_daemon")), "")
    stem = flt.name.split("-")[0]
    candidates = [flt.name, stem, f"{stem}/smtpd", f"{stem}d", flt.name.replace("-", "/")]
    for cand in candidates:
        try:
            if value and re.fullmatch(value, cand):
                return cand
        except re.error:
            break
    lead = re.match(r"[\w./-]+", value)
    return lead.group() if lead else flt.name


def hostile_lines(daemon: str) -> dict[str, bytes]:
    pre = f"Jan 23 21:59:59 host {daemon}[1]: ".encode()
    rnd = random.Random(1).randbytes(MB)
    high = bytes(range(128, 256)) * 2
    return {
        "token": b"x" * MB,
        "a-run": pre + b"Failed password for " + b"a" * MB,
        "digits-dots": pre + b"Failed password for root from " + b"1.2.3.4." * (MB // 8),
        "words": pre + (b"user root from 192.0.2.1 port 22 " * (MB // 33 + 1))[:MB],
        "spaces": pre + b"Failed password for " + b"a " * (MB // 2),
        "invalid-utf8": pre + rnd.translate(high),
        "nul": pre + b"Failed password for " + b"a\0" * (MB // 2),
        "web-access": ACCESS + b"a" * MB + b' HTTP/1.1" 404 153 "-" "-"',
        "web-error": ERROR + b'user "' + b"a" * MB + b'" was not found in "/x", client: '
                     b'192.0.2.1, server: x, request: "GET / HTTP/1.1", host: "x"',
    }


def timed(argv: list[str], env: dict[str, str] | None, repeat: int, timeout: float,
          metric: str) -> tuple[float, bool, int, str]:
    """Best time (s) of `repeat` runs by `metric`, whether a run timed out, last rc and output.

    CPU time (user + system of the child) is the default metric: the work is single-threaded
    and CPU-bound, and unlike wall time it hardly moves when other processes load the machine.
    """
    best, rc, tail = float("inf"), 0, ""
    for _ in range(repeat):
        run = run_once(argv, env, timeout)
        if run.wall >= timeout:
            return timeout, True, run.rc, ""
        best = min(best, run.cpu if metric == "cpu" else run.wall)
        rc, tail = run.rc, " | ".join(run.output.strip().splitlines()[-2:])
    return best, False, rc, tail


Command = Callable[[Filter, Path], list[str]]


def bench_filter(cmd: Command, env: dict[str, str] | None, flt: Filter, work: Path,
                 kinds: list[str], repeat: int, copies: int, timeout: float,
                 metric: str) -> dict[str, str]:
    """ms per hostile line for each kind, as table cells.

    Each file holds `copies` copies of the line so that start-up jitter (tens of ms) is divided
    by `copies`; a result below the jitter can come out negative and is shown as ≈0.
    """
    lines = hostile_lines(daemon_for(flt))
    empty = work / "empty.log"
    empty.touch()
    base, _, rc, tail = timed(cmd(flt, empty), env, max(repeat, 5), timeout, metric)
    cells = {"baseline": f"{base * 1000:.0f}"}
    if rc != 0:
        print(f"  {flt.name}: fails on an empty file (rc={rc}): {tail}", file=sys.stderr)
        return {"baseline": f"error rc={rc}"}
    worst = 0.0
    for kind in kinds:
        path = work / f"{kind}.log"
        path.write_bytes((lines[kind] + b"\n") * copies)
        t, out_of_time, rc, tail = timed(cmd(flt, path), env, repeat, timeout, metric)
        ms = (t - base) * 1000 / copies
        if out_of_time:
            cells[kind] = f">{timeout * 1000 / copies:.0f} ✗"  # per line, like the others
            worst = float("inf")
        elif rc != 0:
            cells[kind] = f"rc={rc}"
            print(f"  {flt.name}/{kind}: rc={rc}: {tail}", file=sys.stderr)
        else:
            cells[kind] = (f"{ms:.0f}" if ms >= 0.5 else "≈0") + (" ✗" if ms > TARGET_MS else "")
            worst = max(worst, ms)
    cells["worst"] = "∞" if worst == float("inf") else f"{max(worst, 0):.0f}"
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--fail2ban", action="store_true",
                    help=f"also time banish on fail2ban's filters in {FAIL2BAN}")
    ap.add_argument("--only-fail2ban", action="store_true", help="only fail2ban's filters")
    ap.add_argument("--filters", nargs="+", help="only these filter names")
    ap.add_argument("--kinds", nargs="+", choices=list(hostile_lines("x")),
                    default=list(hostile_lines("x")))
    ap.add_argument("--banish", metavar="CMD", help="banish command (default: found automatically)")
    ap.add_argument("--fail2ban-regex", metavar="CMD", nargs="?", const="fail2ban-regex",
                    help="time this fail2ban-regex on the same lines instead of banish "
                         "(uses --usedns=no so no hostile text is ever resolved)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per hostile file")
    ap.add_argument("--copies", type=int, default=5, help="copies of the line per file")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per run")
    ap.add_argument("--record", action="store_true", help=f"append the table to {RESULTS}")
    ap.add_argument("--metric", choices=("cpu", "wall"), default="cpu",
                    help="child CPU time (default; robust on a busy machine) or wall time")
    a = ap.parse_args(argv)

    filters = [] if a.only_fail2ban else discover(PACKAGED, a.filters)
    if a.fail2ban or a.only_fail2ban:
        filters += discover(FAIL2BAN, a.filters)
    if not filters:
        print(f"no filters found in {PACKAGED}" + ("" if a.fail2ban else
              " (add --fail2ban to use /etc/fail2ban/filter.d)"), file=sys.stderr)
        return 2

    tool: str
    env: dict[str, str] | None = None
    if a.fail2ban_regex:
        f2b = shlex.split(a.fail2ban_regex)
        tool = a.fail2ban_regex
        if not shutil.which(f2b[0]):
            print(f"{f2b[0]}: not found (install the Debian fail2ban package)", file=sys.stderr)
            return 2

        def cmd(flt: Filter, log: Path) -> list[str]:
            return [*f2b, "-c", str(flt.config), "--usedns=no", "--print-no-missed",
                    "--print-no-ignored", str(log), flt.name]
    else:
        banish: Banish | None = find_banish(a.banish)
        if banish is None:
            print("banish is not installed or importable yet (no `banish` on PATH, no "
                  f"{REPO}/.venv/bin/banish, no banish.cli.main under {REPO}/src); "
                  "install it (`bash scripts/run --version`) or pass --banish CMD", file=sys.stderr)
            return 2
        env, tool, bargv = banish.env, banish.how, banish.argv
        smoke = run_once([*bargv, "--version"], env, a.timeout)
        if smoke.rc != 0:
            tail = " | ".join(smoke.output.strip().splitlines()[-3:])
            print(f"banish does not run yet ({tool} --version: rc={smoke.rc}): {tail}",
                  file=sys.stderr)
            return 2

        def cmd(flt: Filter, log: Path) -> list[str]:
            return [*bargv, "regex", "--config", str(flt.config), "--json", str(log), flt.name]

    print(f"timing {tool} ({a.metric} time) on {len(filters)} filters × {len(a.kinds)} hostile "
          f"1 MB lines (target < {TARGET_MS:.0f} ms per line)", file=sys.stderr)
    cols = ["baseline", *a.kinds, "worst"]
    table = ["| filter | " + " | ".join(f"{c} ms" if c != "baseline" else "start-up ms"
                                       for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    print("\n".join(table))
    slow = 0
    with tempfile.TemporaryDirectory(prefix="banish-hostile-") as tmp:
        for flt in filters:
            cells = bench_filter(cmd, env, flt, Path(tmp), a.kinds, a.repeat, a.copies,
                                 a.timeout, a.metric)
            label = flt.name if flt.config != FAIL2BAN.parent else f"{flt.name} (fail2ban)"
            table.append(f"| {label} | " + " | ".join(cells.get(c, "") for c in cols) + " |")
            print(table[-1], flush=True)
            worst = cells.get("worst", "")
            slow += not worst or worst == "∞" or float(worst) > TARGET_MS
    verdict = f"{slow} of {len(filters)} filters over {TARGET_MS:.0f} ms (or failing) on some line"
    print(verdict, file=sys.stderr)
    if a.record:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with open(RESULTS, "a") as fh:
            fh.write(f"\n## {stamp} — hostile 1 MB lines (bench/hostile.py)\n\n"
                     f"Machine: {machine.cpu_model()}, {machine.cores()} cores, "
                     f"{machine.memory()}, Python {platform.python_version()}. Command: "
                     f"`python3 bench/hostile.py {' '.join(sys.argv[1:])}` ({a.metric} ms per "
                     f"1 MB line, start-up subtracted; target < {TARGET_MS:.0f} ms) with {tool}."
                     "\n\n" + "\n".join(table) + f"\n\n{verdict}\n")
        print(f"appended to {RESULTS}", file=sys.stderr)
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
