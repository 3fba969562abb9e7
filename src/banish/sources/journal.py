"""Reading the systemd journal (``backend = systemd``) as batches of syslog-like lines.

Owns `parse_journalmatch` (fail2ban's ``journalmatch`` syntax), `format_entry` (the one-line
text filters written for syslog files expect: ``HOST IDENT[PID]: MESSAGE``), and
`JournalSource`, which opens the local journal or a directory / list of journal files, replays
the entries from ``since`` to a saved cursor and goes on after it (else starts at ``since``),
and follows new entries through the journal's own inotify descriptor on the asyncio loop. Must
not match lines or persist cursors (the daemon does, from each `Batch`).

Binding: systemd-python (``pip install systemd-python``; it builds against the host's
libsystemd: apt ``libsystemd-dev pkg-config gcc``), the same API as Debian's python3-systemd.
It is imported lazily, so banish runs without it when no jail uses the journal. We call the
low-level methods ``_next``/``_get_all``/``_get_realtime``/``_get_cursor`` that its own
``Reader.get_next`` is built on: ``get_next`` decodes every field of every entry and turns
timestamps into local-time datetimes, which we would only undo.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, cast

from banish.events import LogLine
from banish.sources.base import Batch, JournalCursor, SourceEvent, SourceStatus, StatusState

log = logging.getLogger("banish.sources")

_FIELD = re.compile(r"[A-Z_][A-Z0-9_]*\Z")

SYSTEM_ONLY = 4
"""sd_journal_open flag: system services and the kernel only (what fail2ban uses by default)."""


def parse_journalmatch(spec: str | Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Split ``FIELD=value`` words into OR-ed groups separated by ``+``; raise ValueError.

    Inside a group, matches on different fields must all hold and matches on the same field are
    alternatives (the journal's own rule).
    """
    words = spec.split() if isinstance(spec, str) else [w for s in spec for w in s.split()]
    groups: list[list[str]] = [[]]
    for w in words:
        if w == "+":
            groups.append([])
            continue
        field, eq, _ = w.partition("=")
        if not eq or not _FIELD.match(field):
            raise ValueError(f"journalmatch: {w!r} is not FIELD=value (FIELD in A-Z, 0-9, _)")
        groups[-1].append(w)
    if not words:
        return ()
    if any(not g for g in groups):
        raise ValueError("journalmatch: '+' must separate two non-empty groups")
    return tuple(tuple(g) for g in groups)


def _text(v: bytes | list[bytes] | None) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return " ".join(x.decode("utf-8", "replace") for x in v)
    return v.decode("utf-8", "replace")


def _first(v: bytes | list[bytes] | None) -> bytes | None:
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _usec(v: bytes | list[bytes] | None) -> int | None:
    raw = _first(v)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


Entry = Mapping[str, "bytes | list[bytes]"]


def entry_time(fields: Entry, realtime_usec: int) -> float:
    """When the message was logged: the sender's time if the journal recorded one, else the
    journal's receive time (``__REALTIME_TIMESTAMP``)."""
    src = _usec(fields.get("_SOURCE_REALTIME_TIMESTAMP"))
    return (src if src is not None else realtime_usec) / 1e6


def format_entry(fields: Entry, monotonic_usec: int | None = None) -> str:
    """The syslog-style line fail2ban filters are written against.

    ``HOSTNAME IDENT[PID]: MESSAGE`` where IDENT falls back to ``_COMM`` and PID to ``_PID``;
    kernel messages carry ``[seconds.micro]`` of uptime after ``kernel:``; a multi-line MESSAGE
    keeps its line breaks as a literal ``\\n`` so one entry stays one line.
    """
    parts: list[str] = []
    host = _first(fields.get("_HOSTNAME"))
    if host:
        parts.append(host.decode("utf-8", "replace"))
    ident = _first(fields.get("SYSLOG_IDENTIFIER")) or _first(fields.get("_COMM"))
    if ident:
        tag = ident.decode("utf-8", "replace")
        pid = _first(fields.get("SYSLOG_PID")) or _first(fields.get("_PID"))
        if pid:
            p = pid.decode("utf-8", "replace")
            with contextlib.suppress(ValueError):
                p = str(int(p, 0))
            tag += f"[{p}]"
        tag += ":"
        parts.append(tag)
        if tag == "kernel:":
            mono = _usec(fields.get("_SOURCE_MONOTONIC_TIMESTAMP"))
            if mono is None:
                mono = monotonic_usec
            if mono is not None:
                parts.append(f"[{mono / 1e6:12.6f}]")
    parts.append(_text(fields.get("MESSAGE")))
    return " ".join(parts).replace("\n", "\\n")


class _Reader(Protocol):
    """The slice of systemd.journal.Reader we use (the package ships no type hints)."""

    def fileno(self) -> int: ...
    def reliable_fd(self) -> bool: ...
    def get_timeout_ms(self) -> int: ...
    def process(self) -> int: ...
    def add_match(self, match: str) -> None: ...
    def add_disjunction(self) -> None: ...
    def seek_head(self) -> None: ...
    def seek_realtime(self, seconds: float) -> None: ...
    def seek_cursor(self, cursor: str) -> None: ...
    def test_cursor(self, cursor: str) -> bool: ...
    def _next(self) -> bool: ...
    def _get_all(self) -> dict[str, bytes | list[bytes]]: ...
    def _get_realtime(self) -> int: ...
    def _get_monotonic(self) -> tuple[int, bytes]: ...
    def _get_cursor(self) -> str: ...
    def close(self) -> None: ...


def _systemd_journal() -> Any:
    try:
        return importlib.import_module("systemd.journal")
    except ImportError as exc:
        raise ImportError(
            "backend = systemd needs the systemd-python package "
            "(pip install systemd-python; it builds with apt packages libsystemd-dev pkg-config)"
        ) from exc


class JournalSource:
    """Follows the journal (or the journal files in ``path`` / ``files``), yielding `Batch` es.

    Starts right after ``cursor`` when given and still in the journal; else at the first entry
    with a time ``>= since``; else at the head. Each batch's position is the cursor of its last
    entry. ``flags`` are sd_journal_open flags for the local journal (default: system only).

    With both ``cursor`` and ``since``, the entries from ``since`` up to and including the
    cursor's own come first, as a replay (batches without a position, see `Batch`): a previous
    run counted them in failure windows that died with it. If that entry is gone (vacuumed), or
    older than ``since``, there is nothing to replay and reading goes on after the cursor. If
    the journal ends before the replay met it (a clock step reordered entries, a changed
    ``journalmatch``), reading goes on from there: no entry is ever delivered twice.
    """

    def __init__(
        self,
        journalmatch: str | Sequence[str] = "",
        *,
        path: str | None = None,
        files: Sequence[str] = (),
        flags: int | None = None,
        cursor: JournalCursor | None = None,
        since: float | None = None,
        batch_size: int = 1000,
        poll_interval: float = 5.0,
        retry_interval: float = 5.0,
        name: str = "journal",
    ) -> None:
        if path is not None and files:
            raise ValueError("give a journal directory or journal files, not both")
        _systemd_journal()  # a missing binding is a configuration error: report it before start
        self._matches = parse_journalmatch(journalmatch)
        self._path = path
        self._files = list(files)
        self._flags = flags
        self._cursor = cursor
        self._since = since
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retry_interval = retry_interval
        self._name = name
        self._status: SourceStatus | None = None
        self._pending = False  # the reader stands on an entry not yet delivered
        self._skip_before: int | None = None  # entries received before this (µs) are older
        self._replay_to: tuple[JournalCursor, int] | None = None  # the replay's last entry, time

    @property
    def name(self) -> str:
        return self._name

    @property
    def matches(self) -> tuple[tuple[str, ...], ...]:
        return self._matches

    def status(self) -> tuple[SourceStatus, ...]:
        return () if self._status is None else (self._status,)

    def _state(self, state: StatusState, message: str = "") -> SourceStatus | None:
        if self._status is None or (self._status.state, self._status.message) != (state, message):
            self._status = SourceStatus(self._name, state, message)
            return self._status
        return None

    def _open(self) -> _Reader:
        journal = _systemd_journal()
        if self._path is not None:
            reader = journal.Reader(path=self._path)
        elif self._files:
            reader = journal.Reader(files=self._files)
        else:
            reader = journal.Reader(flags=SYSTEM_ONLY if self._flags is None else self._flags)
        r = cast(_Reader, reader)
        try:
            r.fileno()  # start watching before seeking, so no entry slips in between
            for i, group in enumerate(self._matches):
                if i:
                    r.add_disjunction()
                for m in group:
                    r.add_match(m)
            self._seek(r)
        except BaseException:
            r.close()
            raise
        return r

    def _seek(self, r: _Reader) -> None:
        """Position before the first entry to deliver; sets ``_pending`` if already on it."""
        self._pending = False
        self._replay_to = None
        if self._cursor is not None:
            try:
                r.seek_cursor(self._cursor)
            except (OSError, ValueError):
                log.warning("[%s] the saved journal cursor is not valid: starting %s", self._name,
                            "at the head" if self._since is None else "inside findtime")
            else:
                if not r._next():
                    return  # nothing at or after it (yet)
                if not r.test_cursor(self._cursor):
                    # That entry is gone (vacuumed): we stand on the next one, still unread.
                    self._pending = True
                    log.warning("[%s] the saved cursor's entry is no longer in the journal "
                                "(vacuumed?): reading on from the next entry; the failures "
                                "before it are not replayed", self._name)
                    return
                at = r._get_realtime()
                if self._since is not None and at >= self._since * 1_000_000:
                    r.seek_realtime(self._since)
                    self._skip_before = int(self._since * 1_000_000)
                    self._replay_to = (self._cursor, at)
                    log.info("[%s] replaying the journal entries from findtime to the saved "
                             "cursor", self._name)
                return
        if self._since is not None:
            r.seek_realtime(self._since)
            # The seek lands *near* since (with matches, sometimes on the entry before it).
            self._skip_before = int(self._since * 1_000_000)
        else:
            r.seek_head()

    def _collect(self, r: _Reader) -> Batch | None:
        """The next batch: a replay batch ends at the saved cursor's entry, never mixed."""
        lines: list[LogLine] = []
        cursor: str | None = None
        replay = self._replay_to
        while len(lines) < self._batch_size:
            if self._pending:
                self._pending = False
            elif not r._next():
                if replay is not None:
                    log.warning("[%s] the journal ended before the replay met the saved "
                                "cursor's entry: reading on from here", self._name)
                    self._replay_to = None
                break
            realtime = r._get_realtime()
            if self._skip_before is not None:
                if realtime < self._skip_before:
                    continue
                self._skip_before = None
            fields = r._get_all()
            mono: int | None = None
            ident = _first(fields.get("SYSLOG_IDENTIFIER")) or _first(fields.get("_COMM"))
            if ident == b"kernel" and "_SOURCE_MONOTONIC_TIMESTAMP" not in fields:
                mono = r._get_monotonic()[0]
            lines.append(
                LogLine(
                    format_entry(fields, mono),
                    self._name,
                    entry_time(fields, realtime),
                )
            )
            if replay is None:
                cursor = r._get_cursor()
            elif realtime == replay[1] and r.test_cursor(replay[0]):
                self._replay_to = None  # the last entry the previous run counted
                break
        if replay is not None:
            return Batch(tuple(lines), None) if lines else None
        if cursor is None:
            return None
        self._cursor = cursor
        return Batch(tuple(lines), cursor)

    async def events(self) -> AsyncIterator[SourceEvent]:
        """Yield batches (at most ``batch_size`` entries) and status changes until closed."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        while True:  # (re)open until it works; a journal directory may appear later
            try:
                r = self._open()
                break
            except OSError as exc:
                st = self._state("error", exc.strerror or str(exc))
                if st is not None:
                    yield st
            await asyncio.sleep(self._retry_interval)
        fd = r.fileno()
        loop.add_reader(fd, wake.set)
        try:
            st = self._state("ok")
            if st is not None:
                yield st
            while True:
                try:
                    batch = self._collect(r)
                except OSError as exc:  # a corrupt entry: report it, and try again later
                    batch = None
                    st = self._state("error", exc.strerror or str(exc))
                    if st is not None:
                        yield st
                else:
                    st = self._state("ok")
                    if st is not None:
                        yield st
                if batch is not None:
                    yield batch
                    await asyncio.sleep(0)
                    continue
                timeout: float | None = None
                ms = r.get_timeout_ms()
                if ms >= 0:
                    timeout = ms / 1000
                if not r.reliable_fd() or (self._status is not None and self._status.state != "ok"):
                    timeout = min(timeout or self._poll_interval, self._poll_interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
                wake.clear()
                r.process()
        finally:
            loop.remove_reader(fd)
            r.close()
