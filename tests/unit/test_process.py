"""banish.process.run_process: real programs, bounded in time and output, never left running."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from banish.process import ProcessResult, one_line, run_process


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _gone(pid: int, limit: float = 3.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def test_output_exit_status_and_input() -> None:
    done = asyncio.run(run_process(["/bin/sh", "-c", "cat; echo err >&2; exit 3"],
                                   timeout=10, stdin=b"in\x00put"))
    assert (done.returncode, done.stdout, done.stderr) == (3, b"in\x00put", b"err\n")
    assert not done.ok and done.problem is None and not done.truncated
    assert done.failure("job") == "job failed (exit status 3): err"
    ok = asyncio.run(run_process(["/bin/true"], timeout=10))
    assert ok.ok and ok.failure("job") is None and ok.stdout == b""


def test_large_input_and_output_pass_whole_when_unbounded() -> None:
    data = os.urandom(3 << 20)  # more than any pipe buffer, both ways
    done = asyncio.run(run_process(["cat"], timeout=30, stdin=data, limit=None))
    assert done.ok and done.stdout == data


def test_output_is_bounded() -> None:
    done = asyncio.run(run_process(["/bin/sh", "-c", "yes | head -c 1000000"], timeout=30,
                                   limit=1000))
    assert done.ok and done.stdout == b"y\n" * 500 and done.truncated


def test_a_program_that_cannot_start_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    done = asyncio.run(run_process([str(tmp_path / "missing")], timeout=10))
    assert done.returncode is None and done.problem is not None
    assert done.problem.startswith(f"cannot run {tmp_path / 'missing'}:")
    assert done.failure("job") == f"job: {done.problem}"
    with pytest.raises(ValueError):
        asyncio.run(run_process([], timeout=1))


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"trap '' TERM; sleep 60 & echo $! > {pid_file}; wait"  # ignores SIGTERM
    began = time.monotonic()
    done = asyncio.run(run_process(["/bin/sh", "-c", script], timeout=0.3, kill_grace=0.2))
    assert time.monotonic() - began < 5
    assert done.timed_out and done.returncode is None
    assert done.problem == "timed out after 0.3 s and was killed"
    assert done.failure("job") == "job timed out after 0.3 s and was killed"
    assert _gone(int(pid_file.read_text()))


def test_cancelling_the_caller_kills_the_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def go() -> None:
        task = asyncio.create_task(run_process(
            ["/bin/sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], timeout=60))
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert _gone(int(pid_file.read_text()))


def test_done_when_the_program_exits_not_when_its_background_child_does(tmp_path: Path
                                                                        ) -> None:
    pid_file = tmp_path / "pid"
    began = time.monotonic()
    done = asyncio.run(run_process(
        ["/bin/sh", "-c", f"sleep 30 & echo $! > {pid_file}; echo done"], timeout=10))
    try:
        assert time.monotonic() - began < 5 and done.ok and done.stdout == b"done\n"
    finally:
        os.kill(int(pid_file.read_text()), 9)


def test_one_line_and_status() -> None:
    assert one_line(b"a\n\n  b  \r\nc\n") == "a | b | c"
    assert one_line(b"x" * 30, 10) == "x" * 10 + " ...[truncated]"
    assert one_line(b"\xff") == "\ufffd"
    assert ProcessResult(-9).status == "killed by signal 9"
    assert ProcessResult(None).status == "no exit status"
    assert ProcessResult(0).status == "exit status 0"
