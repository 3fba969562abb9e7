#!/usr/bin/env python3
"""Seeded generator of realistic sshd, postfix/dovecot and nginx logs for the benchmarks.

Owns: the synthetic corpora in bench/data/ (auth.log, mail.log, nginx-error.log,
nginx-access.log) and their manifest.json, which records per line kind how many lines were
written and which fail2ban filter specs ("sshd", "sshd[mode=aggressive]", ...) are expected to
count such a line as a failure.  run_regex.py compares those expectations with what
fail2ban-regex and banish report.

Must not: read real logs, copy fail2ban sample logs, or contact anything on the network.  Every
address is made up (documentation, private, CGNAT and ULA ranges) and only ever written as text.

Lines are produced as *episodes* (bench/episodes.py: a login session, a brute-force connection, a
delivered mail) whose lines are scheduled at later times on a heap, so sessions interleave like
in real logs.  Output is a pure function of (seed, file name, line count, generator source).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import json
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from episodes import KINDS, PLANS, Episode, Gen

DEFAULT_SEED = 20240123
DEFAULT_LINES = 1_000_000
DATA_DIR = Path(__file__).resolve().parent / "data"
FILES = ("auth.log", "mail.log", "nginx-error.log", "nginx-access.log")
START = 1705881600  # 2024-01-22 00:00:00 UTC; syslog lines carry no year, the others do.
SPAN = 2 * 86400
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _stamp(style: str, sec: int) -> str:
    tm = time.gmtime(sec)
    hms = f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
    if style == "syslog":
        return f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {hms}"
    if style == "nginx":
        return f"{tm.tm_year}/{tm.tm_mon:02d}/{tm.tm_mday:02d} {hms}"
    return f"{tm.tm_mday:02d}/{MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:{hms} +0000"


def generate(name: str, lines: int, seed: int, out: Path) -> dict[str, int]:
    """Write `lines` lines of `name` into `out`; return line counts per kind."""
    host, style, plan = PLANS[name]
    episodes = [e for e, _ in plan]
    cum = list(itertools.accumulate(w for _, w in plan))
    # a pilot run with its own seed estimates lines per episode, so the file spans SPAN seconds
    pilot = Gen(name, seed + 1, host)
    for ep in pilot.rng.choices(episodes, cum_weights=cum, k=3000):
        ep(pilot, 0.0)
    gap = SPAN / (lines * 3000 / len(pilot.heap))  # SPAN / expected number of episodes

    g = Gen(name, seed, host)
    rng, heap, counts = g.rng, g.heap, Counter[str]()
    pop, choices, expo = heapq.heappop, rng.choices, rng.expovariate
    t, written, last_sec, stamp = float(START), 0, -1, ""
    buf: list[str] = []
    with open(out / name, "w", encoding="ascii", newline="\n") as fh:
        batch: list[Episode] = []
        while written < lines:
            t += expo(1 / gap)
            if not batch:
                batch = choices(episodes, cum_weights=cum, k=4096)
            batch.pop()(g, t)
            while heap and heap[0][0] <= t and written < lines:
                at, _, kind, head, tail = pop(heap)
                sec = int(at)
                if sec != last_sec:
                    last_sec, stamp = sec, _stamp(style, sec)
                buf.append(f"{head}{stamp}{tail}\n")
                counts[kind] += 1
                written += 1
            if len(buf) >= 20000:
                fh.write("".join(buf))
                buf.clear()
        fh.write("".join(buf))
    return dict(counts)


def _job(args: tuple[str, int, int, str]) -> tuple[str, dict[str, int], float]:
    name, lines, seed, out = args
    t0 = time.perf_counter()
    counts = generate(name, lines, seed, Path(out))
    return name, counts, time.perf_counter() - t0


def expected(counts: dict[str, int], spec: str) -> int:
    """Lines the filter spec should count as failures, per the KINDS table."""
    return sum(n for kind, n in counts.items() if spec in KINDS.get(kind, ()))


def ensure(out: Path, lines: int, seed: int, names: tuple[str, ...] = FILES,
           jobs: int = 0, quiet: bool = False) -> dict[str, dict[str, int]]:
    """Generate the files unless the manifest says identical ones exist; return counts."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    data: dict[str, object] = json.loads(manifest.read_text()) if manifest.exists() else {}
    # the generator's own source is part of the key: editing it invalidates old corpora
    here = Path(__file__).resolve().parent
    version = hashlib.sha256(b"".join(
        (here / f).read_bytes() for f in ("gen_logs.py", "episodes.py"))).hexdigest()[:16]
    same = (data.get("seed"), data.get("lines"), data.get("generator")) == (seed, lines, version)
    files: dict[str, dict[str, int]] = data.get("files", {}) if same else {}  # type: ignore[assignment]
    todo = [n for n in names if n not in files or not (out / n).exists()]
    if todo:
        work = [(n, lines, seed, str(out)) for n in todo]
        workers = jobs or min(len(work), 4)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for name, counts, secs in pool.map(_job, work):
                files[name] = counts
                if not quiet:
                    size = (out / name).stat().st_size / 1e6
                    print(f"wrote {out / name}: {lines} lines, {size:.0f} MB in {secs:.1f} s",
                          file=sys.stderr)
        manifest.write_text(json.dumps({"seed": seed, "lines": lines, "generator": version, "files": files},
                                       indent=1, sort_keys=True))
    return {n: files[n] for n in names}


def report(all_counts: dict[str, dict[str, int]]) -> str:
    rows = ["| file | kind | lines | counted as failure by (fail2ban 1.0.2) |",
            "|---|---|---:|---|"]
    for name, counts in all_counts.items():
        total = sum(counts.values())
        attack = 0
        for kind in sorted(k for k in counts if k != "-"):
            attack += counts[kind]
            rows.append(f"| {name} | {kind} | {counts[kind]} | {', '.join(KINDS[kind]) or '— (ignored/missed by design)'} |")
        rows.append(f"| {name} | **attack lines total** | {attack} ({100 * attack / total:.1f} % of {total}) | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--lines", type=int, default=DEFAULT_LINES, help="lines per file")
    ap.add_argument("--out", type=Path, default=DATA_DIR)
    ap.add_argument("--files", nargs="+", choices=FILES, default=list(FILES))
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per file, max 4)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the manifest matches")
    a = ap.parse_args(argv)
    if a.force:
        (a.out / "manifest.json").unlink(missing_ok=True)
    counts = ensure(a.out, a.lines, a.seed, tuple(a.files), a.jobs)
    print(report(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
