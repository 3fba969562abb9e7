"""JournalSource on a private journal written by systemd-journal-remote (no journald needed).

systemd-journal-remote turns the journal export format on its stdin into a real journal file;
running it again appends to the same file while the source follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import struct
import subprocess
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from banish.sources import Batch, JournalSource, SourceEvent, SourceStatus
from banish.sources.journal import entry_time, format_entry, parse_journalmatch

T = TypeVar("T")
TIMEOUT = 5.0
REMOTE = next(
    (
        p
        for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
        if os.path.exists(p)
    ),
    None,
)
HAVE_BINDING = importlib.util.find_spec("systemd") is not None

needs_journal = pytest.mark.skipif(
    REMOTE is None or not HAVE_BINDING,
    reason="needs apt systemd-journal-remote and pip systemd-python (apt libsystemd-dev pkg-config)",
)

BOOT = "0123456789abcdef0123456789abcdef"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


class Journal:
    """A private journal file fed through systemd-journal-remote, entry times under control."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.dir = directory
        self.seq = 0
        self.t0 = int(time.time()) - 3600

    def time_of(self, seq: int) -> float:
        return self.t0 + seq  # whole seconds: exact in microseconds and in floats

    def write(self, *entries: Mapping[str, str]) -> list[float]:
        out = bytearray()
        times = []
        for fields in entries:
            self.seq += 1
            t = self.time_of(self.seq)
            times.append(t)
            out += f"__REALTIME_TIMESTAMP={int(t * 1e6)}\n".encode()
            out += f"__MONOTONIC_TIMESTAMP={self.seq * 1000}\n_BOOT_ID={BOOT}\n".encode()
            for k, v in fields.items():
                data = v.encode()
                if b"\n" in data:  # the export format's binary-safe field form
                    out += k.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
                else:
                    out += k.encode() + b"=" + data + b"\n"
            out += b"\n"
        assert REMOTE is not None
        p = subprocess.run(
            [REMOTE, "-o", str(self.dir / "remote.journal"), "-"],
            input=bytes(out),
            capture_output=True,
            timeout=20,
        )
        assert p.returncode == 0, p.stderr
        return times


def sshd(msg: str, pid: int = 4242) -> dict[str, str]:
    return {
        "_HOSTNAME": "host1",
        "SYSLOG_IDENTIFIER": "sshd",
        "_PID": str(pid),
        "_SYSTEMD_UNIT": "sshd.service",
        "MESSAGE": msg,
    }


def cron(msg: str) -> dict[str, str]:
    return {
        "_HOSTNAME": "host1",
        "SYSLOG_IDENTIFIER": "CRON",
        "_PID": "7",
        "_SYSTEMD_UNIT": "cron.service",
        "_COMM": "cron",
        "MESSAGE": msg,
    }


def bare_sshd(msg: str) -> dict[str, str]:
    """An sshd entry without a unit: only the second journalmatch group selects it."""
    return {"_HOSTNAME": "host1", "_COMM": "sshd", "_PID": "99", "MESSAGE": msg}


class Follow:
    def __init__(self, source: JournalSource) -> None:
        self.source = source
        self.queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self.cursor: str | None = None
        self.batches: list[tuple[list[str], str | None]] = []  # (texts, position)

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

    async def lines(self, n: int) -> list[tuple[str, float | None]]:
        out: list[tuple[str, float | None]] = []
        while len(out) < n:
            if self._task.done():
                self._task.result()
            ev = await asyncio.wait_for(self.queue.get(), TIMEOUT)
            if isinstance(ev, Batch):
                assert ev.position is None or isinstance(ev.position, str)
                if ev.position is None:  # a replay: only lines, never a cursor to store
                    assert ev.lines and self.cursor is None, "a replay after a live batch"
                else:
                    self.cursor = ev.position
                self.batches.append(([line.text for line in ev.lines], ev.position))
                out += [(line.text, line.time) for line in ev.lines]
                assert all(line.source == "journal" for line in ev.lines)
        assert len(out) == n, out
        return out


MATCH = "_SYSTEMD_UNIT=sshd.service + _COMM=sshd"


@needs_journal
def test_follow_filter_and_resume_after_saved_cursor(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal")
    t = j.write(sshd("m1"), cron("c1"), bare_sshd("m2"), sshd("m3", pid=5))

    async def main() -> str:
        async with Follow(JournalSource(MATCH, path=str(j.dir))) as f:
            assert await f.lines(3) == [
                ("host1 sshd[4242]: m1", t[0]),
                ("host1 sshd[99]: m2", t[2]),
                ("host1 sshd[5]: m3", t[3]),
            ]
            t2 = j.write(cron("c2"), sshd("m4"))  # appended while the source follows
            assert await f.lines(1) == [("host1 sshd[4242]: m4", t2[1])]
            t3 = j.write(sshd("m5"))
            assert await f.lines(1) == [("host1 sshd[4242]: m5", t3[0])]
            assert f.source.status() == (SourceStatus("journal", "ok"),)
            assert f.cursor is not None
            return f.cursor

    cursor = run(main())
    j.write(sshd("m6"), cron("c3"), sshd("m7"))  # while banish is down

    async def resume() -> None:
        async with Follow(JournalSource(MATCH, path=str(j.dir), cursor=cursor)) as f:
            got = await f.lines(2)
            assert [text for text, _ in got] == ["host1 sshd[4242]: m6", "host1 sshd[4242]: m7"]
            j.write(sshd("m8"))
            assert [text for text, _ in await f.lines(1)] == ["host1 sshd[4242]: m8"]

    run(resume())


@needs_journal
def test_since_starts_inside_findtime_and_no_match_reads_all(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal")
    t = j.write(sshd("old"), cron("c"), sshd("recent1"), sshd("recent2"))

    async def main() -> None:
        async with Follow(JournalSource(MATCH, path=str(j.dir), since=t[2])) as f:
            assert [x for x, _ in await f.lines(2)] == [
                "host1 sshd[4242]: recent1",
                "host1 sshd[4242]: recent2",
            ]
        async with Follow(JournalSource("", files=[str(j.dir / "remote.journal")])) as f:
            assert [x for x, _ in await f.lines(4)][:2] == [
                "host1 sshd[4242]: old",
                "host1 CRON[7]: c",
            ]

    run(main())


@needs_journal
def test_missing_journal_directory_is_an_error_status(tmp_path: Path) -> None:
    async def main() -> None:
        source = JournalSource(MATCH, path=str(tmp_path / "nope"), retry_interval=30)
        gen = source.events()
        ev = await asyncio.wait_for(gen.__anext__(), TIMEOUT)
        assert isinstance(ev, SourceStatus) and ev.state == "error"
        await gen.aclose()

    run(main())


def test_parse_journalmatch_groups() -> None:
    assert parse_journalmatch(MATCH) == (("_SYSTEMD_UNIT=sshd.service",), ("_COMM=sshd",))
    assert parse_journalmatch("_SYSTEMD_UNIT=a.service _COMM=a") == (
        ("_SYSTEMD_UNIT=a.service", "_COMM=a"),
    )
    assert parse_journalmatch(["A=1", "+ B=2"]) == (("A=1",), ("B=2",))
    assert parse_journalmatch("  ") == ()
    for bad in ("unit=sshd", "NOVALUE", "A=1 +", "+ A=1", "A=1 + + B=2", "9X=1"):
        with pytest.raises(ValueError, match="journalmatch"):
            parse_journalmatch(bad)


def test_format_entry_like_syslog() -> None:
    e: dict[str, bytes | list[bytes]] = {
        "_HOSTNAME": b"h",
        "SYSLOG_IDENTIFIER": b"sshd",
        "SYSLOG_PID": b"12",
        "_PID": b"13",
        "MESSAGE": b"line one\nline two",
    }
    assert format_entry(e) == "h sshd[12]: line one\\nline two"
    assert format_entry({"_COMM": b"su", "_PID": b"0x10", "MESSAGE": b"x"}) == "su[16]: x"
    assert format_entry({"_COMM": b"su", "SYSLOG_PID": b"abc", "MESSAGE": b"x"}) == "su[abc]: x"
    assert format_entry({"MESSAGE": [b"a", b"b"]}) == "a b"
    assert format_entry({"_HOSTNAME": b"h", "MESSAGE": b"bad \xff"}) == "h bad \ufffd"
    kernel = {
        "_HOSTNAME": b"h",
        "SYSLOG_IDENTIFIER": b"kernel",
        "MESSAGE": b"oops",
        "_SOURCE_MONOTONIC_TIMESTAMP": b"12345678",
    }
    assert format_entry(kernel) == "h kernel: [   12.345678] oops"
    del kernel["_SOURCE_MONOTONIC_TIMESTAMP"]
    assert format_entry(kernel, monotonic_usec=5_000_000) == "h kernel: [    5.000000] oops"


def test_entry_time_prefers_the_senders_timestamp() -> None:
    assert entry_time({}, 1_700_000_000_500_000) == 1_700_000_000.5
    assert entry_time({"_SOURCE_REALTIME_TIMESTAMP": b"1699999999000000"}, 1) == 1_699_999_999.0


def texts(got: list[tuple[str, float | None]]) -> list[str]:
    return [text.split(": ", 1)[1] for text, _ in got]


async def first_run(j: Journal, n: int) -> str:
    """Read ``n`` matching entries as a previous run did; the cursor it would have stored."""
    async with Follow(JournalSource(MATCH, path=str(j.dir))) as f:
        await f.lines(n)
        assert f.cursor is not None
        return f.cursor


@needs_journal
def test_cursor_and_since_replay_up_to_the_cursor_then_go_on_after_it(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal")
    t = j.write(sshd("m1"), cron("c1"), sshd("m2"), bare_sshd("m3"), cron("c2"), sshd("m4"))

    async def main() -> None:
        cursor = await first_run(j, 4)
        j.write(sshd("m5"), cron("c3"), sshd("m6"))  # while banish is down
        for attempt in (1, 2):  # a restart from the same cursor replays the same entries
            source = JournalSource(MATCH, path=str(j.dir), cursor=cursor, since=t[1],
                                   batch_size=2)
            async with Follow(source) as f:
                assert texts(await f.lines(5)) == ["m2", "m3", "m4", "m5", "m6"]
                # The replay ends at the cursor's entry, in batches of its own without a cursor.
                assert f.batches[:2] == [(["host1 sshd[4242]: m2", "host1 sshd[99]: m3"], None),
                                         (["host1 sshd[4242]: m4"], None)]
                assert all(p is not None for _, p in f.batches[2:])
                if attempt == 2:
                    j.write(sshd("m7"))
                    assert texts(await f.lines(1)) == ["m7"]  # nothing came twice before it

    run(main())


@needs_journal
def test_cursor_older_than_since_replays_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal")
    j.write(sshd("m1"), sshd("m2"))

    async def main() -> None:
        cursor = await first_run(j, 2)
        t = j.write(sshd("m3"))
        async with Follow(JournalSource(MATCH, path=str(j.dir), cursor=cursor, since=t[0])) as f:
            assert texts(await f.lines(1)) == ["m3"]
            assert f.batches == [(["host1 sshd[4242]: m3"], f.cursor)]

    run(main())


@needs_journal
def test_vacuumed_cursor_reads_on_from_the_next_entry_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path / "journal")
    j.write(sshd("m1"), sshd("m2"))

    async def main() -> None:
        cursor = await first_run(j, 2)
        (j.dir / "remote.journal").unlink()  # the file holding the cursor's entry is gone
        j.write(sshd("m3"), sshd("m4"))
        source = JournalSource(MATCH, path=str(j.dir), cursor=cursor, since=j.t0)
        async with Follow(source) as f:
            assert texts(await f.lines(2)) == ["m3", "m4"]
            assert all(p is not None for _, p in f.batches)

    with caplog.at_level("WARNING", logger="banish.sources"):
        run(main())
    assert "no longer in the journal" in caplog.text
