"""What machine a benchmark ran on (shared by the bench scripts; run them as bench/NAME.py)."""

from __future__ import annotations

import os
import platform
import subprocess


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
