"""What machine a benchmark ran on (shared by the bench scripts; run them as bench/NAME.py)."""

from __future__ import annotations

import os
import platform


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
