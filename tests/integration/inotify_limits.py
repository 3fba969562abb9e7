"""Scenarios that run FileSources against inotify's per-user kernel limits, really exhausted.

Run as ``python -m tests.integration.inotify_limits SCENARIO DIR`` inside a new user namespace
(``unshare -U -r``): there, ``/proc/sys/user/max_inotify_watches`` and ``max_inotify_instances``
are the namespace's own limits, which its root may lower without touching the host's sysctls,
and the kernel counts our watches and descriptors against them. Each scenario prints one JSON
object of what it saw; `test_sources_inotify` asserts on it. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from banish.sources import FileSource, SourceStatus
from tests.integration.test_sources_file import Follow, append

LINES = 3000


def inotify_fds() -> int:
    """How many inotify descriptors this process holds, as the kernel lists them."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                n += 1
        except OSError:  # the descriptor listdir itself used is gone by now
            pass
    return n


def set_limit(name: str, value: int) -> None:
    Path("/proc/sys/user", name).write_text(f"{value}\n")


def view(st: SourceStatus) -> list[str]:
    return [st.name, st.state, st.message]


async def write_in_bursts(path: Path) -> list[str]:
    """Append LINES lines in uneven writes that split lines, pausing between; return them."""
    expected = [f"line {i} " + "x" * (i % 37) for i in range(LINES)]
    data = "".join(f"{t}\n" for t in expected).encode()
    pos, step = 0, 1
    while pos < len(data):
        step = step * 7 % 9973 + 13  # 20 B … 10 kB, rarely on a line boundary
        append(path, data[pos : pos + step])
        pos += step
        await asyncio.sleep(0.002)
    return expected


async def watches(tmp: Path) -> dict[str, Any]:
    """One watch allowed: the first source's directory gets it, the second one is polled."""
    set_limit("max_inotify_watches", 1)
    a, b = tmp / "a" / "a.log", tmp / "b" / "b.log"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("")
    out: dict[str, Any] = {}
    # poll_interval=30: the first source can only learn of new lines through its watch.
    sa = FileSource(str(a), poll_interval=30, retry_interval=30, name="a")
    sb = FileSource(str(b), poll_interval=0.05, retry_interval=30, name="b")
    fa, fb = Follow(sa), Follow(sb)
    await fa.__aenter__()
    await fa.status(lambda s: s.state == "ok")
    await fb.__aenter__()
    out["b_status"] = view(await fb.status(lambda s: True))
    out["b_snapshot"] = [view(s) for s in sb.status()]
    out["a_status"] = [view(s) for s in sa.status()]
    expected = await write_in_bursts(b)
    out["b_in_order"] = await fb.lines(LINES) == expected
    append(a, "to a\n")
    out["a_lines"] = await fa.lines(1)
    out["fds"] = inotify_fds()
    await fa.__aexit__(None, None, None)  # its watch is freed: b gets one at its next poll
    out["b_recovered"] = view(await fb.status(lambda s: s.state != "polling"))
    out["b_watched"] = all(h is not None for h in sb._dirs.values())
    append(b, "after\n")
    out["b_after"] = await fb.lines(1)
    await fb.__aexit__(None, None, None)
    return out


async def instances(tmp: Path) -> dict[str, Any]:
    """No inotify descriptor allowed at all: the source polls, then takes one when allowed."""
    set_limit("max_inotify_instances", 0)
    log = tmp / "c.log"
    log.write_text("")
    src = FileSource(str(log), poll_interval=0.05, retry_interval=30, name="c")
    out: dict[str, Any] = {}
    async with Follow(src) as f:
        out["status"] = view(await f.status(lambda s: True))
        out["backend"] = src.backend_in_use
        out["fds"] = inotify_fds()
        expected = await write_in_bursts(log)
        out["in_order"] = await f.lines(LINES) == expected
        set_limit("max_inotify_instances", 1)
        out["recovered"] = view(await f.status(lambda s: s.state != "polling"))
        out["backend_after"] = src.backend_in_use
        out["fds_after"] = inotify_fds()
        append(log, "after\n")
        out["after"] = await f.lines(1)
    return out


SCENARIOS: dict[str, Callable[[Path], Awaitable[dict[str, Any]]]] = {
    "watches": watches,
    "instances": instances,
}


def main() -> None:
    scenario, tmp = SCENARIOS[sys.argv[1]], Path(sys.argv[2])
    out = asyncio.run(asyncio.wait_for(scenario(tmp), 60))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
