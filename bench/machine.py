"""What machine a benchmark ran on (shared by the bench scripts; run them as bench/NAME.py)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def cpu_model() -> str:
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory() -> str:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def cores() -> str:
    return f"{os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})"


def first_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    """The first line a tool prints (its version, a commit), or "unknown"."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if out.returncode == 0 and text else "unknown"


def append_section(results: Path, title: str, details: Sequence[str],
                   load: tuple[float, float, float], text: str) -> None:
    """Append one dated section to bench/RESULTS.md: the heading, ``- `` detail lines (the
    machine, the command, the data), the load average taken before the run, then ``text``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = [f"\n## {stamp} — {title}\n", *(f"- {d}" for d in details),
               f"- load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n",
               text, ""]
    if not results.exists():
        results.write_text("# Benchmark results\n\nAppended by the `--record` flag of the "
                           "scripts in bench/; see bench/README.md.\n")
    with open(results, "a") as fh:
        fh.write("\n".join(section))
    print(f"appended to {results}", file=sys.stderr)
