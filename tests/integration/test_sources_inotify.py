"""One inotify descriptor for every FileSource of a loop, and polling when the kernel says no.

The descriptor count is read from /proc/self/fd, as an operator would. The limit tests lower
the real kernel limits inside a user namespace of their own (see `inotify_limits`), so the
watch and the descriptor are refused by the kernel itself, not by a stub; they are skipped
where unprivileged user namespaces are not available.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from banish.sources import FileSource
from banish.sources import inotify as inotify_mod
from banish.sources.inotify import INSTANCES_EXHAUSTED, WATCHES_EXHAUSTED, shared_hub
from tests.integration.inotify_limits import inotify_fds
from tests.integration.test_sources_file import Follow, append, run

ROOT = Path(__file__).resolve().parents[2]


def test_a_hundred_sources_share_one_inotify_descriptor(tmp_path: Path) -> None:
    """Built as the daemon builds them (no hub passed), each in a directory of its own."""
    logs = []
    for i in range(100):
        d = tmp_path / f"jail{i}"
        d.mkdir()
        (d / "app.log").write_text("")
        logs.append(d / "app.log")
    before = inotify_fds()

    async def main() -> None:
        follows = [
            Follow(FileSource([str(p)], positions={}, since=None, date_of=None,
                              backend="auto", name=f"jail{i}"))
            for i, p in enumerate(logs)
        ]
        for f in follows:
            await f.__aenter__()
        try:
            for f in follows:
                await f.status(lambda s: s.state == "ok")
                assert f.source.backend_in_use == "inotify"
            assert inotify_fds() == before + 1
            for i, p in enumerate(logs):
                append(p, f"line for {i}\n")
            for i, f in enumerate(follows):
                assert await f.lines(1) == [f"line for {i}"]
        finally:
            for f in follows:
                await f.__aexit__(None, None, None)
        assert inotify_fds() == before  # the last source to close closed the descriptor
        assert inotify_mod._shared == {}

    run(main())
    run(main())  # a new loop gets a hub of its own, not the dead loop's


def test_shared_hub_is_per_loop_and_counts_its_users() -> None:
    async def main() -> None:
        hub = shared_hub()
        again = shared_hub()
        assert again is hub
        hub.release()
        assert not hub.closed
        again.release()
        assert hub.closed

    run(main())


def test_hub_of_a_loop_closed_without_release_is_reclaimed() -> None:
    before = inotify_fds()

    async def leak() -> None:
        shared_hub()  # never released

    asyncio.run(leak())
    assert inotify_fds() == before + 1

    async def main() -> None:
        shared_hub().release()

    run(main())
    assert inotify_fds() == before
    assert inotify_mod._shared == {}


def _limited(scenario: str, tmp: Path) -> dict[str, Any]:
    """Run a scenario of `inotify_limits` as root of a fresh user namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a user namespace with its own limits")
    probe = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c", "echo 1 > /proc/sys/user/max_inotify_watches"],
        capture_output=True, text=True, timeout=20,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot lower inotify limits in a user namespace: {probe.stderr.strip()}")
    cmd = ["unshare", "-U", "-r", sys.executable, "-m", "tests.integration.inotify_limits",
           scenario, str(tmp)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_exhausted_watches_poll_that_directory_only_and_recover(tmp_path: Path) -> None:
    got = _limited("watches", tmp_path)
    b = str(tmp_path / "b" / "b.log")
    assert got["b_status"] == [b, "polling", WATCHES_EXHAUSTED]
    assert got["b_snapshot"] == [got["b_status"]]  # what `banish status` shows as file_errors
    assert f"{got['b_status'][1]}: {got['b_status'][2]}" == (  # as the daemon words it
        "polling: inotify watches exhausted (fs.inotify.max_user_watches); raise it with sysctl"
    )
    assert got["a_status"] == [[str(tmp_path / "a" / "a.log"), "ok", ""]]
    assert got["b_in_order"] is True  # every line, in order, through polling
    assert got["a_lines"] == ["to a"]  # the other directory still on inotify (poll is 30 s)
    assert got["fds"] == 1
    assert got["b_recovered"] == [b, "ok", ""]  # a watch freed: the polled directory takes it
    assert got["b_watched"] is True
    assert got["b_after"] == ["after"]


def test_no_inotify_instance_left_polls_then_recovers(tmp_path: Path) -> None:
    got = _limited("instances", tmp_path)
    log = str(tmp_path / "c.log")
    assert got["status"] == [log, "polling", INSTANCES_EXHAUSTED]
    assert got["backend"] == "polling"
    assert got["fds"] == 0
    assert got["in_order"] is True
    assert got["recovered"] == [log, "ok", ""]
    assert got["backend_after"] == "inotify"
    assert got["fds_after"] == 1
    assert got["after"] == ["after"]

