"""FileSource on real files: following, rotation, truncation, globs, resume, findtime backfill,
and the replay of the lines within findtime before a stored position.

Every wait is for an event (the next batch or status) with a timeout; "nothing else arrived"
is checked by writing a marker line afterwards and requiring it to be the next thing seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from banish.sources import Batch, FileSource, Position, SourceEvent, SourceStatus
from banish.sources.linereader import LineReader, head_hash
from banish.sources.seek import RangeReader, find_start

T = TypeVar("T")
TIMEOUT = 5.0
SRC = str(Path(__file__).resolve().parents[2] / "src")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


class Follow:
    """Runs ``source.events()`` in a task and hands its events to the test one by one."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self.positions: dict[str, Position] = {}
        self.statuses: list[SourceStatus] = []

    async def __aenter__(self) -> Follow:
        self._gen = self.source.events()
        self._task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        async for ev in self._gen:
            await self.queue.put(ev)

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._gen.aclose()

    async def next_event(self, timeout: float = TIMEOUT) -> SourceEvent:
        if self._task.done():
            self._task.result()  # surface a crash of the source
        ev = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(ev, Batch):
            if isinstance(ev.position, Position):
                self.positions[ev.position.path] = ev.position
        else:
            self.statuses.append(ev)
        return ev

    async def lines(self, n: int, timeout: float = TIMEOUT) -> list[str]:
        """The next ``n`` lines, whatever batches they come in."""
        out: list[str] = []
        while len(out) < n:
            ev = await self.next_event(timeout)
            if isinstance(ev, Batch):
                out.extend(line.text for line in ev.lines)
        assert len(out) == n, out
        return out

    async def until_line(self, text: str) -> list[str]:
        """Every line up to and including ``text``."""
        out: list[str] = []
        while text not in out:
            ev = await self.next_event()
            if isinstance(ev, Batch):
                out.extend(line.text for line in ev.lines)
        assert out[-1] == text, out
        return out

    async def status(self, pred: Callable[[SourceStatus], bool]) -> SourceStatus:
        while True:
            ev = await self.next_event()
            if isinstance(ev, SourceStatus) and pred(ev):
                return ev


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


BACKENDS = ["inotify", "polling"]


def src(path: Path | str, backend: str = "inotify", **kw: Any) -> FileSource:
    return FileSource(str(path), backend=backend, poll_interval=0.05, retry_interval=0.05, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_append_is_followed_and_positions_track_the_file(tmp_path: Path, backend: str) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")

    async def main() -> None:
        async with Follow(src(log, backend)) as f:
            assert await f.lines(2) == ["one", "two"]
            append(log, "three\nfour\n")
            assert await f.lines(2) == ["three", "four"]
            pos = f.positions[str(log)]
            assert pos.offset == log.stat().st_size
            assert pos.inode == log.stat().st_ino
            assert f.source.backend_in_use == backend

    run(main())


def test_partial_line_is_held_until_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("first\npar")

    async def main() -> None:
        async with Follow(src(log)) as f:
            assert await f.lines(1) == ["first"]
            assert f.positions[str(log)].offset == len("first\n")  # the partial is not counted
            append(log, "tial\r\nnext\n")
            assert await f.lines(2) == ["partial", "next"]

    run(main())


def test_invalid_utf8_is_replaced_and_nul_passes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"bad \xff\xfe x\nnul \x00 y\ncut \xe2\x82\n")

    async def main() -> None:
        async with Follow(src(log)) as f:
            assert await f.lines(3) == ["bad \ufffd\ufffd x", "nul \x00 y", "cut \ufffd"]

    run(main())


def test_long_lines_are_capped_not_buffered(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    mb_line = "x" * 1_000_000
    log.write_text(mb_line + "\nafter\n")

    async def main() -> None:
        async with Follow(src(log)) as f:  # the default cap (1 MiB) lets a 1 MB line through
            assert await f.lines(2) == [mb_line, "after"]
        small = tmp_path / "small.log"
        small.write_text("ok\n" + "y" * 5000)
        source = src(small, max_line=1000, read_size=300)
        async with Follow(source) as f:
            # The over-long line is delivered truncated as soon as the cap is reached, before
            # its newline exists; the rest of it is skipped, the next line is intact.
            assert await f.lines(2) == ["ok", "y" * 1000]
            append(small, "y" * 3000 + "\nnext\n")
            assert await f.lines(1) == ["next"]
            reader = source._files[str(small)].reader
            assert reader is not None
            assert len(reader._partial) <= 1000 + 300
            assert f.positions[str(small)].offset == small.stat().st_size

    run(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_by_rename_reads_old_file_to_its_end_first(tmp_path: Path, backend: str) -> None:
    log = tmp_path / "auth.log"
    log.write_text("a1\na2\n")

    async def main() -> None:
        async with Follow(src(log, backend)) as f:
            assert await f.lines(2) == ["a1", "a2"]
            append(log, "a3\n")
            os.rename(log, tmp_path / "auth.log.1")
            append(tmp_path / "auth.log.1", "a4\n")  # the writer has not reopened yet
            log.write_text("b1\n")  # now it has
            assert await f.until_line("b1") == ["a3", "a4", "b1"]
            append(log, "b2\n")
            assert await f.until_line("b2") == ["b2"]
            pos = f.positions[str(log)]
            assert (pos.inode, pos.offset) == (log.stat().st_ino, 6)

    run(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_copytruncate_restarts_at_zero(tmp_path: Path, backend: str) -> None:
    log = tmp_path / "app.log"
    log.write_text("old line 1\nold line 2\n")

    async def main() -> None:
        async with Follow(src(log, backend)) as f:
            assert await f.lines(2) == ["old line 1", "old line 2"]
            shutil.copy(log, tmp_path / "app.log.1")
            with open(log, "r+") as fh:
                fh.truncate(0)
            append(log, "new\n")
            assert await f.until_line("new") == ["new"]

    run(main())


def test_truncation_hidden_by_fast_regrowth_is_detected_by_head_hash(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("first line\nsecond\n")

    async def main() -> None:
        async with Follow(src(log)) as f:
            assert await f.lines(2) == ["first line", "second"]
            # Truncated and rewritten past the old offset before the source looks again.
            with open(log, "r+") as fh:
                fh.truncate(0)
            append(log, "other head\nmore than before\n")
            assert await f.until_line("more than before") == ["other head", "more than before"]

    run(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_glob_picks_up_files_created_later(tmp_path: Path, backend: str) -> None:
    d = tmp_path / "app"
    d.mkdir()
    (d / "a.log").write_text("a1\n")

    async def main() -> None:
        async with Follow(src(d / "*.log", backend)) as f:
            assert await f.lines(1) == ["a1"]
            (d / "ignored.txt").write_text("nope\n")
            (d / "b.log").write_text("b1\nb2\n")  # new: read from its start
            got: list[tuple[str, str]] = []
            while len(got) < 2:
                ev = await f.next_event()
                if isinstance(ev, Batch):
                    got += [(line.source, line.text) for line in ev.lines]
            assert got == [(str(d / "b.log"), "b1"), (str(d / "b.log"), "b2")]
            append(d / "a.log", "a2\n")
            assert await f.until_line("a2") == ["a2"]

    run(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_glob_that_also_matches_the_rotated_name_reads_nothing_twice(
    tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "auth.log"
    log.write_text("a1\n")

    async def main() -> None:
        async with Follow(src(f"{log}*", backend)) as f:
            assert await f.lines(1) == ["a1"]
            append(log, "a2\n")
            os.rename(log, tmp_path / "auth.log.1")
            append(tmp_path / "auth.log.1", "a3\n")
            log.write_text("b1\n")
            # The rotated file is now a match of its own: it continues where it was (a2), it
            # is not read again from 0; the order between the two files is not defined.
            assert sorted(await f.lines(3)) == ["a2", "a3", "b1"]
            append(tmp_path / "auth.log.1", "a4\n")  # still followed under its new name
            append(log, "b2\n")
            assert sorted(await f.lines(2)) == ["a4", "b2"]

    run(main())


def test_glob_of_a_directory_that_appears_later(tmp_path: Path) -> None:
    async def main() -> None:
        async with Follow(src(tmp_path / "later" / "*.log")) as f:
            st = await f.status(lambda s: True)
            assert st.state == "missing"
            (tmp_path / "later").mkdir()
            (tmp_path / "later" / "x.log").write_text("x1\n")
            assert await f.until_line("x1") == ["x1"]

    run(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleted_file_that_comes_back(tmp_path: Path, backend: str) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\n")

    async def main() -> None:
        async with Follow(src(log, backend)) as f:
            assert await f.lines(1) == ["one"]
            log.unlink()
            st = await f.status(lambda s: s.name == str(log) and s.state != "ok")
            assert st.state == "missing"
            assert f.source._files[str(log)].old == []  # a deleted file is not kept open
            log.write_text("again\n")
            await f.status(lambda s: s.name == str(log) and s.state == "ok")
            assert await f.until_line("again") == ["again"]

    run(main())


def test_not_a_regular_file_is_an_error_that_is_retried(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.mkdir()

    async def main() -> None:
        async with Follow(src(log)) as f:
            st = await f.status(lambda s: s.name == str(log))
            assert st.state == "error"
            assert f.source.status() == (st,)
            log.rmdir()
            log.write_text("now a file\n")
            assert await f.until_line("now a file") == ["now a file"]
            assert f.source.status()[0].state == "ok"

    run(main())


PERMISSION_SCENARIO = textwrap.dedent(
    """
    import asyncio, os, sys
    from banish.sources import Batch, FileSource, SourceStatus

    log = sys.argv[1]
    os.chmod(log, 0)

    async def main():
        gen = FileSource(log, backend="inotify", retry_interval=30).events()
        ev = await asyncio.wait_for(gen.__anext__(), 5)
        assert isinstance(ev, SourceStatus) and ev.state == "error", ev
        print("status", ev.state, ev.message, flush=True)
        os.chmod(log, 0o644)  # IN_ATTRIB wakes the source long before its 30 s retry
        while True:
            ev = await asyncio.wait_for(gen.__anext__(), 5)
            if isinstance(ev, Batch):
                print("lines", [line.text for line in ev.lines], flush=True)
                break
        await gen.aclose()

    asyncio.run(main())
    """
)


def test_unreadable_file_reports_error_and_recovers(tmp_path: Path) -> None:
    log = tmp_path / "secret.log"
    log.write_text("hidden\n")
    cmd = [sys.executable, "-c", PERMISSION_SCENARIO, str(log)]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that allow it
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (util-linux) to drop root's file-access override")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["status error Permission denied", "lines ['hidden']"]


def test_restart_resumes_at_stored_position(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("l1\nl2\n")

    async def main() -> None:
        async with Follow(src(log)) as f:
            assert await f.lines(2) == ["l1", "l2"]
            pos = f.positions[str(log)]
        append(log, "l3\nl4\n")  # written while banish was down
        async with Follow(src(log, positions={str(log): pos}, since=0.0, date_of=_epoch)) as f:
            assert await f.lines(2) == ["l3", "l4"]

    run(main())


def test_restart_after_rotation_reads_old_tail_then_new_file(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("old1\nold2\n")

    async def main() -> None:
        async with Follow(src(log)) as f:
            assert await f.lines(2) == ["old1", "old2"]
            pos = f.positions[str(log)]
        append(log, "old3\n")  # written while banish was down, then rotated
        os.rename(log, tmp_path / "auth.log.1")
        log.write_text("new1\n")
        async with Follow(src(log, positions={str(log): pos})) as f:
            assert await f.until_line("new1") == ["old3", "new1"]
            append(log, "new2\n")
            assert await f.until_line("new2") == ["new2"]
            assert f.positions[str(log)].inode == log.stat().st_ino
            assert f.source._files[str(log)].old == []

    run(main())


def test_restart_after_copytruncate_starts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("first old line\nsecond old line\n")

    async def main() -> None:
        async with Follow(src(log)) as f:
            assert await f.lines(2) == ["first old line", "second old line"]
            pos = f.positions[str(log)]
        with open(log, "r+") as fh:  # same inode, other content, longer than the old offset
            fh.truncate(0)
            fh.write("a different first line\nand a second one, longer\n")
        assert log.stat().st_ino == pos.inode and log.stat().st_size > pos.offset
        async with Follow(src(log, positions={str(log): pos})) as f:
            assert await f.lines(2) == ["a different first line", "and a second one, longer"]

    run(main())


def test_head_hash_only_covers_consumed_bytes(tmp_path: Path) -> None:
    log = tmp_path / "h.log"
    log.write_text("head line\nrest\n")
    fd = os.open(log, os.O_RDONLY)
    try:
        assert head_hash(fd, 0) == ""
        full = head_hash(fd, 100)
        assert head_hash(fd, 10) == full  # through the first newline: stable from here on
        assert head_hash(fd, 4) != full
    finally:
        os.close(fd)


def _epoch(line: str) -> float | None:
    head = line.split(" ", 1)[0]
    return float(head) if head.isdigit() else None


def test_findtime_backfill_binary_search_on_a_million_lines(tmp_path: Path) -> None:
    n = 1_000_000
    t0 = 1_700_000_000
    log = tmp_path / "big.log"
    with open(log, "w") as fh:
        chunk = 50_000
        for s in range(0, n, chunk):
            fh.write(
                "".join(
                    f"{t0 + i} host sshd[{i % 30000}]: Failed password for root port {i}\n"
                    + ("  continuation without a date\n" if i % 1000 == 0 else "")
                    for i in range(s, s + chunk)
                )
            )
    size = log.stat().st_size
    since = t0 + n - 2500  # the last 2,500 lines are inside findtime

    calls = 0

    def counting(line: str) -> float | None:
        nonlocal calls
        calls += 1
        return _epoch(line)

    progress: list[tuple[int, int]] = []
    fd = os.open(log, os.O_RDONLY)
    try:
        started = time.perf_counter()
        off = find_start(
            fd, size, since, counting, progress=lambda p, d, t: progress.append((d, t))
        )
        elapsed = time.perf_counter() - started
        line = os.pread(fd, 200, off).split(b"\n", 1)[0].decode()
        assert line.startswith(f"{since} ")
        assert off == 0 or os.pread(fd, 1, off - 1) == b"\n"
        assert find_start(fd, size, 0, _epoch) == 0
        assert find_start(fd, size, t0 + n + 10, _epoch) == size  # nothing recent: the end
    finally:
        os.close(fd)
    print(
        f"\nfind_start: {size / 1e6:.0f} MB, {n} lines: {elapsed * 1000:.1f} ms, {calls} dates parsed"
    )
    assert calls < 3000, calls  # a scan would parse a million
    assert elapsed < 1.0
    assert progress and progress[-1] == (size, size)
    assert all(d <= t for d, t in progress)

    def expected_line(i: int) -> str:
        return f"{t0 + i} host sshd[{i % 30000}]: Failed password for root port {i}"

    async def main() -> None:
        source = src(log, since=float(since), date_of=_epoch)
        async with Follow(source) as f:
            got = await f.until_line(expected_line(n - 1))
            want = [expected_line(i) for i in range(n - 2500, n)]
            assert [g for g in got if g[0].isdigit()] == want
            assert len(got) == 2500 + 2  # with the undated lines after 998000 and 999000
            append(log, "marker\n")
            assert await f.lines(1) == ["marker"]  # nothing else was read before it

    run(main())


def test_findtime_skips_undated_continuations_and_handles_small_files(tmp_path: Path) -> None:
    log = tmp_path / "small.log"
    log.write_text("100 a\n  cont\n200 b\n  cont b\n300 c\n")
    fd = os.open(log, os.O_RDONLY)
    try:
        size = log.stat().st_size
        assert os.pread(fd, 5, find_start(fd, size, 150, _epoch)) == b"200 b"
        assert os.pread(fd, 5, find_start(fd, size, 300, _epoch)) == b"300 c"
        assert find_start(fd, size, 301, _epoch) == size
    finally:
        os.close(fd)


def test_findtime_start_is_the_first_of_many_lines_with_the_same_date(tmp_path: Path) -> None:
    log = tmp_path / "burst.log"
    with open(log, "w") as fh:
        fh.write("".join(f"{100 + i} before {i}\n" for i in range(50_000)))
        fh.write("".join(f"60000 burst {i}\n" for i in range(200_000)))
        fh.write("".join(f"60001 after {i}\n" for i in range(1000)))
    fd = os.open(log, os.O_RDONLY)
    try:
        off = find_start(fd, log.stat().st_size, 60000, _epoch)
        assert os.pread(fd, 20, off).startswith(b"60000 burst 0\n")
    finally:
        os.close(fd)


def test_inotify_records_are_decoded() -> None:
    from banish.sources.inotify import IN_CREATE, IN_MODIFY, InotifyEvent, parse_events

    raw = struct.pack("iIII", 3, IN_CREATE, 0, 16) + b"new.log".ljust(16, b"\0")
    raw += struct.pack("iIII", 3, IN_MODIFY, 7, 0)
    assert parse_events(raw) == [
        InotifyEvent(3, IN_CREATE, 0, "new.log"),
        InotifyEvent(3, IN_MODIFY, 7, ""),
    ]


def test_shared_hub_serves_several_sources(tmp_path: Path) -> None:
    from banish.sources import WatchHub

    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("")
    b.write_text("")

    async def main() -> None:
        hub = WatchHub()
        try:
            sa = FileSource(str(a), hub=hub)
            sb = FileSource(str(b), hub=hub)
            async with Follow(sa) as fa, Follow(sb) as fb:
                await fa.status(lambda s: s.state == "ok")
                await fb.status(lambda s: s.state == "ok")
                append(b, "to b\n")
                append(a, "to a\n")
                assert await fa.lines(1) == ["to a"]
                assert await fb.lines(1) == ["to b"]
            assert hub._subs == {}  # both unwatched the shared directory on close
        finally:
            hub.close()

    run(main())


# -- replay: the lines of findtime before a stored position, once, then the rest ----------------


def dated(first: int, last: int) -> str:
    return "".join(f"{t} line {t}\n" for t in range(first, last + 1))


async def batches_until(f: Follow, text: str) -> list[tuple[list[str], Position | str | None]]:
    """Every batch with lines up to the one holding ``text``: (lines, position)."""
    out: list[tuple[list[str], Position | str | None]] = []
    while not out or text not in out[-1][0]:
        ev = await f.next_event()
        if isinstance(ev, Batch) and ev.lines:
            out.append(([line.text for line in ev.lines], ev.position))
    return out


async def first_run(log: Path, n: int) -> Position:
    """Read ``n`` lines as a previous run did, and return the position it would have stored."""
    async with Follow(src(log)) as f:
        await f.lines(n)
        return f.positions[str(log)]


def test_restart_replays_findtime_before_the_stored_position_once(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("  undated head\n" + dated(1000, 1059))

    async def main() -> None:
        pos = await first_run(log, 61)
        append(log, dated(1060, 1069))  # written while banish was down
        source = src(log, positions={str(log): pos}, since=1030.0, date_of=_epoch, read_size=64)
        async with Follow(source) as f:
            got = await batches_until(f, "1069 line 1069")
            replayed = [line for lines, p in got if p is None for line in lines]
            live = [line for lines, p in got if p is not None for line in lines]
            assert replayed == dated(1030, 1059).splitlines()  # several chunks of 64 bytes
            assert live == dated(1060, 1069).splitlines()
            first_live = next(i for i, (_, p) in enumerate(got) if p is not None)
            assert all(p is not None for _, p in got[first_live:])  # the replay comes first
            # Positions only move forward from the stored one: replay batches carry none.
            after = [p for _, p in got[first_live:]]
            assert all(isinstance(p, Position) and p.offset > pos.offset for p in after)
            append(log, "marker\n")
            assert await f.lines(1) == ["marker"]  # nothing was read twice or left over
            assert source._files[str(log)].replay is None

    run(main())


def test_a_restart_during_the_replay_replays_the_same_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(dated(1000, 1019))

    async def main() -> None:
        pos = await first_run(log, 20)
        for _ in range(2):  # the stored position did not move: the same lines come again
            async with Follow(src(log, positions={str(log): pos}, since=1010.0, date_of=_epoch,
                                  read_size=32)) as f:
                got = await batches_until(f, "1019 line 1019")
                replayed = [line for lines, _ in got for line in lines]
                assert replayed == dated(1010, 1019).splitlines()
                assert all(p is None for _, p in got)

    run(main())


def test_no_replay_without_a_stored_position_or_before_since(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(dated(1000, 1019))

    async def main() -> None:
        # No position: the first line inside findtime, every batch with its position.
        async with Follow(src(log, since=1015.0, date_of=_epoch)) as f:
            got = await batches_until(f, "1019 line 1019")
            assert [line for lines, _ in got for line in lines] == dated(1015, 1019).splitlines()
            assert all(isinstance(p, Position) for _, p in got)
        pos = await first_run(log, 20)
        append(log, dated(1020, 1021))
        # The stored position is older than since: nothing to replay, reading goes on there.
        async with Follow(src(log, positions={str(log): pos}, since=1030.0, date_of=_epoch)) as f:
            got = await batches_until(f, "1021 line 1021")
            assert got == [(dated(1020, 1021).splitlines(), f.positions[str(log)])]
        # Without since (or dates): no replay either.
        async with Follow(src(log, positions={str(log): pos})) as f:
            assert await f.lines(2) == dated(1020, 1021).splitlines()

    run(main())


def test_replay_from_the_file_rotated_while_banish_was_down(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(dated(1000, 1009))

    async def main() -> None:
        pos = await first_run(log, 10)
        append(log, dated(1010, 1011))  # while down: written, rotated, and a new file begun
        os.rename(log, tmp_path / "auth.log.1")
        log.write_text(dated(1012, 1013))
        async with Follow(src(log, positions={str(log): pos}, since=1005.0, date_of=_epoch)) as f:
            got = await batches_until(f, "1013 line 1013")
            assert [(lines, p is None) for lines, p in got] == [
                (dated(1005, 1009).splitlines(), True),  # the old file's replay, found by inode
                (dated(1010, 1011).splitlines(), False),  # the old file's rest
                (dated(1012, 1013).splitlines(), False),  # the new file
            ]
            append(log, "marker\n")
            assert await f.lines(1) == ["marker"]
            assert f.source._files[str(log)].old == []

    run(main())


def test_replayed_lines_read_as_they_read_live(tmp_path: Path) -> None:
    """Over-long lines cut at max_line, CRLF and invalid bytes: the same lines either way."""
    log = tmp_path / "odd.log"
    data = (b"short\r\n" + b"x" * 25 + b"\nmid\n" + b"y" * 10 + b"\n" + b"\xff bad\n"
            + b"z" * 40 + b"\nlast\n")
    log.write_bytes(data)
    fd = os.open(log, os.O_RDONLY)
    try:
        for read_size in (1, 3, 7, 64):
            live = LineReader(str(log), fd, 0, 0, max_line=10, read_size=read_size,
                              encoding="utf-8")
            want: list[str] = []
            while True:
                lines, got = live.read_chunk()
                want += lines
                if not got:
                    break
            replay = RangeReader(fd, 0, len(data), read_size=read_size, max_line=10,
                                 encoding="utf-8")
            seen: list[str] = []
            while (chunk := replay.read_chunk()) is not None:
                seen += chunk
            assert seen == want, read_size
            assert replay.fd == -1  # closed once done
        mid = data.index(b"mid")
        part = RangeReader(fd, mid, data.index(b"last"), read_size=4, max_line=10,
                           encoding="utf-8")
        out: list[str] = []
        while (chunk := part.read_chunk()) is not None:
            out += chunk
        assert out == ["mid", "y" * 10, "\ufffd bad", "z" * 10]
    finally:
        os.close(fd)


def test_find_start_reads_no_further_than_size(tmp_path: Path) -> None:
    log = tmp_path / "bounded.log"
    log.write_text(dated(100, 199))
    end = len(dated(100, 149).encode())
    fd = os.open(log, os.O_RDONLY)
    try:
        assert find_start(fd, end, 120, _epoch) == len(dated(100, 119).encode())
        assert find_start(fd, end, 150, _epoch) == end  # 150 exists, but only after size
    finally:
        os.close(fd)


def test_glob_rotation_while_down_replays_and_reads_each_line_once(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(dated(1000, 1009))

    async def main() -> None:
        pos = await first_run(log, 10)
        append(log, dated(1010, 1010))
        os.rename(log, tmp_path / "auth.log.1")  # now a match of the glob in its own right
        log.write_text(dated(1011, 1011))
        source = src(f"{log}*", positions={str(log): pos}, since=1005.0, date_of=_epoch)
        async with Follow(source) as f:
            got = await f.lines(7)
            assert sorted(got) == dated(1005, 1011).splitlines()
            append(log, "marker\n")
            assert await f.lines(1) == ["marker"]  # the rotated file is not read again

    run(main())
