#!/usr/bin/env python3
"""What the forged-line check (banish.match.forgery) costs the matcher, side by side in one run.

Owns: the timing of fail2ban's sshd, dovecot and nginx-http-auth filters (the installed Debian
files, as the daemon compiles them) through the daemon's matcher (prefilter + ChunkMatcher),
with the check and without it (the same code with ``layout_for`` answering None), rounds
alternating, on two inputs per filter: the generated logs of bench/gen_logs.py (realistic: a
few per cent of the lines are failures) and a flood in which every line is a failure (the
worst case: the check runs once per matched line). Reports best-of-rounds times, their ratio,
and the microseconds spent inside the check per call (timed around each call in an extra run).

Must not: touch the network, the firewall or any configuration.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gen_logs
import machine
from banish.config.filterdef import load_filter
from banish.match import filter as matcher_module
from banish.match.chunks import ChunkMatcher
from banish.match.filter import CompiledFilter
from run_regex import RESULTS

BENCH = Path(__file__).resolve().parent
NOW = 1124013600.0
SECTION = "the forged-line check's cost on matching (bench/forgery_cost.py)"
CASES = {"sshd": "auth.log", "dovecot": "mail.log", "nginx-http-auth": "nginx-error.log"}


def flood(name: str, lines: int, seed: int) -> bytes:
    """``lines`` failures of the filter's server, each from its own made-up address."""
    rng = random.Random(seed)

    def address() -> str:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    make: dict[str, Callable[[int], str]] = {
        "sshd": lambda i: (f"Aug 14 11:59:{i % 60:02d} host sshd[{i}]: Failed password for "
                           f"invalid user u{i % 97} from {address()} port {1024 + i % 6000} ssh2"),
        "dovecot": lambda i: (f"Aug 14 11:59:{i % 60:02d} host dovecot: auth: "
                              f"passwd-file(u{i % 97},{address()},<s{i}>): unknown user"),
        "nginx-http-auth": lambda i: (
            f'2005/08/14 11:59:{i % 60:02d} [error] 42#42: *{i} user "u{i % 97}": password '
            f'mismatch, client: {address()}, server: example.org, request: "GET /p HTTP/1.1", '
            'host: "example.org", referrer: "https://example.org/"'),
    }
    return "".join(make[name](i) + "\n" for i in range(lines)).encode()


def timed(name: str, data: bytes, check: bool) -> tuple[float, int]:
    """Seconds to match ``data`` and the failures found, with or without the check."""
    original = matcher_module.layout_for
    if not check:
        matcher_module.layout_for = lambda _name: None  # type: ignore[assignment]
    try:
        flt = CompiledFilter(load_filter("/etc/fail2ban", name, {}))
    finally:
        matcher_module.layout_for = original
    started = time.perf_counter()
    found = sum(1 for o in ChunkMatcher(flt).feed(data, NOW) if o.result.failure is not None)
    return time.perf_counter() - started, found


def inside(name: str, data: bytes) -> float:
    """Microseconds per call spent inside the check itself (timed around each call): the
    figure the whole-run ratio, with its +/-10 % noise on long runs, only brackets."""
    flt = CompiledFilter(load_filter("/etc/fail2ban", name, {}))
    check = flt._forged
    spent, calls = 0.0, 0

    def timed_check(*args: Any) -> bool:
        nonlocal spent, calls
        started = time.perf_counter()
        try:
            return check(*args)
        finally:
            spent += time.perf_counter() - started
            calls += 1

    flt._forged = timed_check  # type: ignore[method-assign]
    for _ in ChunkMatcher(flt).feed(data, NOW):
        pass
    return spent / max(calls, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines of each generated log")
    ap.add_argument("--flood", type=int, default=200_000, help="lines of each flood")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20240123)
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    ap.add_argument("--note", default="")
    a = ap.parse_args(argv)
    load = os.getloadavg()
    gen_logs.ensure(BENCH / "data", a.lines, a.seed, tuple(set(CASES.values())), quiet=True)
    rows = ["| filter | input | lines | failures | without check s | with check s | ratio "
            "| µs per failure in the check |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, log in CASES.items():
        inputs = {log: (BENCH / "data" / log).read_bytes(),
                  "flood (every line a failure)": flood(name, a.flood, a.seed)}
        for label, data in inputs.items():
            best: dict[bool, float] = {}
            counts: set[int] = set()
            for _ in range(a.rounds):
                for check in (False, True):
                    seconds, found = timed(name, data, check)
                    best[check] = min(best.get(check, seconds), seconds)
                    counts.add(found)
            if len(counts) != 1:
                print(f"{name} {label}: the check changed the failures found: {counts}",
                      file=sys.stderr)
                return 1
            lines = data.count(b"\n")
            rows.append(f"| {name} | {label} | {lines:,} | {counts.pop():,} | {best[False]:.2f} "
                        f"| {best[True]:.2f} | {best[True] / best[False]:.3f} "
                        f"| {inside(name, data):.2f} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows)
    if a.record:
        rev = machine.first_line(["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"])
        machine.append_section(RESULTS, SECTION, [
            f"CPU: {machine.cpu_model()}", f"cores: {machine.cores()}",
            f"RAM: {machine.memory()}", f"kernel: {platform.system()} {platform.release()}",
            f"python: {platform.python_version()} (in-process; run with the venv's python)",
            f"fail2ban filters: {machine.first_line(['fail2ban-client', '--version'])}",
            f"banish commit: {rev}",
            f"command: `python3 bench/forgery_cost.py {shlex.join(argv or sys.argv[1:])}`",
            f"data: bench/gen_logs.py seed {a.seed}, {a.lines:,} lines per log, and floods of "
            f"{a.flood:,} failures; in-process matcher (prefilter + ChunkMatcher) over fail2ban's "
            f"filter files; best of {a.rounds} alternating rounds",
            *([f"note: {a.note}"] if a.note else [])], load, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
