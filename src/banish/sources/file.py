"""Following log files named by paths or glob patterns, across rotations, truncations and restarts.

Owns `FileSource`: which files a ``logpath`` means right now, where to start in each (a stored
`Position`, after replaying the lines of ``findtime`` before it; else the first line inside
``findtime``; else 0 for files that appear later), when
a name starts pointing at a new file (rename+create rotation: the old file is read to its end
first), when a file was truncated under us (copytruncate: start again at 0), and how we learn of
changes (one inotify watch per directory on the loop's shared descriptor, or polling, also for
just the directories whose watch hit a kernel limit). Must not match lines, parse dates itself
(``date_of`` is given), persist positions (the daemon does, from each `Batch`) or read clocks.

Events are async: `FileSource.events()` yields a `Batch` per chunk read from one file (so one
busy file cannot starve the others, nor the loop) and a `SourceStatus` when a file's health
changes; an unreadable or missing file is retried, never fatal.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Literal

from banish.events import LogLine
from banish.sources.base import (
    Batch,
    DateOf,
    Position,
    Progress,
    SourceEvent,
    SourceStatus,
    StatusState,
)
from banish.sources.inotify import (
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MODIFY,
    IN_MOVE_SELF,
    DirWatch,
    InotifyEvent,
    WatchHub,
    exhaustion,
    shared_hub,
)
from banish.sources.linereader import LineReader, head_hash, open_regular
from banish.sources.seek import RangeReader, find_start

log = logging.getLogger("banish.sources")

Backend = Literal["auto", "inotify", "polling"]

_STRUCTURE = ~IN_MODIFY  # any other event (create, delete, move, attrib, overflow) changes names


class _Tracked:
    """One logical file: a name we follow, what it points to now, and what it pointed to."""

    __slots__ = ("explicit", "old", "path", "reader", "replay", "resume", "status", "use_since")

    def __init__(self, path: str, *, explicit: bool, resume: Position | None, use_since: bool):
        self.path = path
        self.explicit = explicit  # named without wildcards: kept even while missing
        self.reader: LineReader | None = None
        self.old: list[LineReader] = []  # rotated away or deleted, still being read to the end
        self.replay: RangeReader | None = None  # lines before the stored position, read again
        self.resume = resume  # stored position, used by the first successful open only
        self.use_since = use_since  # existed at start without a stored position
        self.status: SourceStatus | None = None


class FileSource:
    """Follows every file matching ``logpath`` (one pattern or several), yielding `Batch` es.

    ``positions`` (by path) resume where a previous run stopped. Before that, the lines of the
    stored position's file dated ``>= since`` and before the position are *replayed*: delivered
    once more in batches without a position (see `Batch`), so that the failure windows, which
    live in memory only, hold exactly what they held before the restart. The start of the
    replay is found by binary search with ``date_of``; its end is the stored position, where
    reading goes on, so no line comes twice. A stored position whose file was renamed away
    (rotated while we were down) is found by inode and head hash: its replay, then its rest,
    then the new file. Files present at start without a position begin at the first line dated
    ``>= since``, or at 0 when ``since`` is None. Files that appear later begin at 0.

    ``backend``: ``inotify`` watches each directory; ``polling`` stats every ``poll_interval``
    seconds; ``auto`` uses inotify when it can. Without a ``hub``, every source of the running
    loop shares one (`banish.sources.inotify.shared_hub`): one inotify descriptor for the whole
    daemon however many jails, released with the last source. ``retry_interval`` paces retries
    of unreadable files and of directories that cannot be watched yet.

    When inotify runs into a per-user kernel limit (no watch left for a directory, or no
    descriptor for the hub), the files concerned, and only those, are polled every
    ``poll_interval`` and reported in state ``polling`` with the limit to raise; lines keep
    coming, in order. The watch (or hub) is tried again at every poll, and the state returns to
    ``ok`` once it is granted. This holds for ``backend="inotify"`` too: it refuses only a
    system without inotify, not a transient shortage.
    """

    def __init__(
        self,
        logpath: str | Sequence[str],
        *,
        positions: Mapping[str, Position] | None = None,
        since: float | None = None,
        date_of: DateOf | None = None,
        backend: Backend = "auto",
        poll_interval: float = 1.0,
        retry_interval: float = 5.0,
        max_line: int = 1 << 20,
        read_size: int = 256 << 10,
        encoding: str = "utf-8",
        progress: Progress | None = None,
        hub: WatchHub | None = None,
        name: str | None = None,
    ) -> None:
        self._patterns = [logpath] if isinstance(logpath, str) else list(logpath)
        if not self._patterns:
            raise ValueError("no log path given")
        if since is not None and date_of is None:
            raise ValueError("since needs date_of to find the start")
        "".encode(encoding)  # unknown encodings fail here, at configuration time
        if max_line < 1 or read_size < 1:
            raise ValueError("max_line and read_size must be positive")
        self._name = name or ", ".join(self._patterns)
        self._positions = dict(positions or {})
        self._since = since
        self._date_of = date_of
        self._backend = backend
        self._poll_interval = poll_interval
        self._retry_interval = retry_interval
        self._max_line = max_line
        self._read_size = read_size
        self._encoding = encoding
        self._progress = progress
        self._given_hub = hub  # the caller's, never closed here
        self._hub: WatchHub | None = None
        self._leased = False  # self._hub came from shared_hub() and must be released
        self._no_hub: str | None = None  # why there is no hub, when a kernel limit is the reason
        self._files: dict[str, _Tracked] = {}
        self._pattern_status: dict[str, SourceStatus] = {}
        self._dirs: dict[str, DirWatch | None] = {}
        self._exhausted: dict[str, str] = {}  # directory → limit its watch ran into (polled)
        self._wake: asyncio.Event | None = None
        self._need_check = True
        self._modified: set[str] = set()
        self._magic_dirs = False  # a wildcard in a directory part: new directories need polling
        self.backend_in_use: Literal["inotify", "polling"] | None = None

    @property
    def name(self) -> str:
        return self._name

    def status(self) -> tuple[SourceStatus, ...]:
        st = [t.status for t in self._files.values() if t.status is not None]
        return (*self._pattern_status.values(), *st)

    # -- the loop -------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[SourceEvent]:
        """Yield batches and status changes until closed; see the class docstring."""
        wake = self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._start_watching()
        try:
            for ev in self._scan(initial=True):
                yield ev
            last_scan = loop.time()
            while True:
                if self._need_check:
                    self._need_check = False
                    last_scan = loop.time()
                    for ev in self._scan(initial=False):
                        yield ev
                if self._modified:
                    modified, self._modified = self._modified, set()
                    for ev in self._check_truncated(modified):
                        yield ev
                busy = False
                for t in list(self._files.values()):
                    out, got = self._read_once(t)
                    busy = busy or got
                    for ev in out:
                        yield ev
                # Polling and retries are due on time even while a busy file keeps us reading.
                interval = self._wait_timeout()
                due = None if interval is None else last_scan + interval - loop.time()
                if busy:
                    if due is not None and due <= 0:
                        self._need_check = True
                    await asyncio.sleep(0)  # let watch callbacks and other tasks run
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), None if due is None else max(due, 0))
                except TimeoutError:
                    self._need_check = True
                wake.clear()
        finally:
            self._stop_watching()
            for t in self._files.values():
                for r in (t.reader, *t.old, t.replay):
                    if r is not None:
                        r.close()

    def _wait_timeout(self) -> float | None:
        if self.backend_in_use == "polling" or self._exhausted:
            return self._poll_interval
        if (
            any(h is None for h in self._dirs.values())
            or self._magic_dirs
            or any(t.status is not None and t.status.state == "error" for t in self._files.values())
        ):
            return self._retry_interval
        return None

    # -- watching ---------------------------------------------------------------------------

    def _start_watching(self) -> None:
        """Pick the backend: the given hub, else the loop's shared one, else polling."""
        self.backend_in_use = "polling"
        if self._backend != "polling":
            self._take_hub()

    def _take_hub(self) -> None:
        if self._given_hub is not None:
            self._hub = self._given_hub
        else:
            try:
                self._hub = shared_hub()
            except OSError as exc:
                # A limit (EMFILE) can pass: poll and ask again. inotify missing altogether
                # cannot: polling for good (auto) or refusing to start (inotify). A retry
                # that fails otherwise keeps the limit it first ran into.
                limit = exhaustion(exc)
                if limit is None and self._no_hub is None and self._backend == "inotify":
                    raise
                self._no_hub = limit or self._no_hub
                return
            self._leased = True
        self._no_hub = None
        self.backend_in_use = "inotify"

    def _stop_watching(self) -> None:
        if self._hub is not None:
            for h in self._dirs.values():
                if h is not None:
                    self._hub.unwatch(h)
            if self._leased:
                self._hub.release()
        self._hub, self._leased = None, False
        self._dirs.clear()
        self._exhausted.clear()

    def _update_dir_watches(self) -> None:
        if self._hub is None and self._no_hub is not None:
            self._take_hub()  # polled for want of a descriptor: ask again at every poll
        if self._hub is None:
            return
        wanted: set[str] = set()
        for pat in self._patterns:
            d = os.path.dirname(pat) or "."
            if glob.has_magic(d):
                self._magic_dirs = True
                wanted.update(x for x in glob.glob(d) if os.path.isdir(x))
            else:
                wanted.add(d)
        for d, h in list(self._dirs.items()):
            if d not in wanted:
                if h is not None:
                    self._hub.unwatch(h)
                del self._dirs[d]
                self._exhausted.pop(d, None)
        for d in wanted:
            if self._dirs.get(d) is None:
                try:
                    self._dirs[d] = self._hub.watch_dir(d, self._callback(d))
                except OSError as exc:
                    self._dirs[d] = None  # not there (yet) or not allowed: retried on a timer
                    limit = exhaustion(exc)
                    if limit is not None:  # ENOSPC: this directory is polled until a watch frees
                        self._exhausted[d] = limit
                        continue
                self._exhausted.pop(d, None)

    def _callback(self, dirpath: str) -> Callable[[list[InotifyEvent]], None]:
        def on_events(events: list[InotifyEvent]) -> None:
            for ev in events:
                if ev.mask & _STRUCTURE:
                    self._need_check = True
                else:
                    self._modified.add(os.path.join(dirpath, ev.name))
                if ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                    h = self._dirs.get(dirpath)
                    if h is not None and self._hub is not None:
                        self._hub.unwatch(h)
                    self._dirs[dirpath] = None
            if self._wake is not None:
                self._wake.set()

        return on_events

    # -- which files, and where to start ----------------------------------------------------

    def _scan(self, *, initial: bool) -> Iterator[SourceEvent]:
        """Re-resolve names: new glob matches, rotations, deletions, truncations, retries."""
        self._update_dir_watches()
        matched: dict[str, bool] = {}
        for pat in self._patterns:
            if glob.has_magic(pat):
                hits = sorted(p for p in glob.glob(pat) if os.path.isfile(p))
                state: StatusState = "ok" if hits else "missing"
                yield from self._pattern_state(pat, state, "" if hits else "no file matches")
                for p in hits:
                    matched.setdefault(p, False)
            else:
                matched[pat] = True
        for path, explicit in matched.items():
            if path not in self._files:
                resume = self._positions.get(path) if initial else None
                self._files[path] = _Tracked(
                    path, explicit=explicit, resume=resume, use_since=initial
                )
        for t in list(self._files.values()):
            yield from self._check_file(t)
            gone = t.reader is None and not t.old and t.replay is None
            if not t.explicit and t.path not in matched and gone:
                del self._files[t.path]

    def _check_file(self, t: _Tracked) -> Iterator[SourceEvent]:
        try:
            st = os.stat(t.path)
        except FileNotFoundError:
            if t.reader is not None:
                t.old.append(t.reader)
                t.reader = None
            t.resume, t.use_since = None, False  # when it comes back, it is a new file
            yield from self._state(t, "missing", "no such file")
            return
        except OSError as exc:
            yield from self._state(t, "error", _reason(exc))
            return
        r = t.reader
        if r is not None:
            if r.inode == st.st_ino:
                try:
                    if r.truncated():
                        r.restart()
                        yield Batch((), r.position())
                except OSError as exc:
                    yield from self._state(t, "error", _reason(exc))
                else:
                    yield from self._readable(t)
                return
            t.old.append(r)  # the name now points at another file: rotated by rename
            t.reader = None
        adopted = self._adopt(st)
        if adopted is not None:  # a file we already read, renamed to a name we follow
            adopted.path = t.path
            t.reader = adopted
            t.resume, t.use_since = None, False
            yield from self._readable(t)
            return
        try:
            fd, st = open_regular(t.path)
        except FileNotFoundError:
            yield from self._state(t, "missing", "no such file")
            return
        except OSError as exc:
            yield from self._state(t, "error", _reason(exc))
            return
        try:
            t.reader = self._start_reader(t, fd, st)
        except OSError as exc:
            os.close(fd)
            yield from self._state(t, "error", _reason(exc))
            return
        yield from self._readable(t)

    def _start_reader(self, t: _Tracked, fd: int, st: os.stat_result) -> LineReader:
        offset = 0
        pos = t.resume
        if pos is not None:
            same = (
                pos.inode == st.st_ino
                and st.st_size >= pos.offset
                and head_hash(fd, pos.offset) == pos.first_line_hash
            )
            if same:
                offset = pos.offset
                t.replay = self._replay(t.path, fd, offset)
            else:  # rotated while we were away: finish the old file first if it is still here
                old = self._find_rotated(t.path, pos)
                if old is not None:
                    t.replay = self._replay(t.path, old.fd, pos.offset)
                    t.old.append(old)
                else:
                    log.info("[%s] %s was rotated or truncated while banish was down and the "
                             "old file is not found by inode: its failures within findtime are "
                             "not replayed", self._name, t.path)
        elif t.use_since and self._since is not None and self._date_of is not None:
            offset = find_start(
                fd,
                st.st_size,
                self._since,
                self._date_of,
                encoding=self._encoding,
                path=t.path,
                progress=self._progress,
            )
        t.resume, t.use_since = None, False
        return self._reader(t.path, fd, st.st_ino, offset)

    def _replay(self, path: str, fd: int, end: int) -> RangeReader | None:
        """The lines dated ``>= since`` before a stored position ``end``: what the previous run
        had counted in its failure windows, read again because windows are not stored.

        Best effort: a file we cannot search is not replayed (reading still resumes at ``end``).
        """
        if self._since is None or self._date_of is None or end <= 0:
            return None
        try:
            start = find_start(fd, end, self._since, self._date_of, encoding=self._encoding,
                               path=path, progress=self._progress)
            if start >= end:
                return None
            replay = RangeReader(fd, start, end, read_size=self._read_size,
                                 max_line=self._max_line, encoding=self._encoding)
        except OSError as exc:
            log.warning("[%s] %s: cannot read again the lines before the stored position: %s",
                        self._name, path, _reason(exc))
            return None
        log.info("[%s] %s: replaying %d bytes logged in findtime before the stored position",
                 self._name, path, end - start)
        return replay

    def _reader(self, path: str, fd: int, inode: int, offset: int) -> LineReader:
        return LineReader(
            path,
            fd,
            inode,
            offset,
            max_line=self._max_line,
            read_size=self._read_size,
            encoding=self._encoding,
        )

    def _find_rotated(self, path: str, pos: Position) -> LineReader | None:
        """The file a stored position belonged to, if it was renamed within its directory."""
        busy = {r.inode for t in self._files.values() for r in (t.reader, *t.old) if r}
        if pos.inode in busy:
            return None
        try:
            entries = list(os.scandir(os.path.dirname(path) or "."))
        except OSError:
            return None
        for e in entries:
            try:
                if e.path == path or e.inode() != pos.inode or not e.is_file(follow_symlinks=False):
                    continue
                fd, st = open_regular(e.path)
            except OSError:
                continue
            try:
                if st.st_size >= pos.offset and head_hash(fd, pos.offset) == pos.first_line_hash:
                    return self._reader(path, fd, st.st_ino, pos.offset)
            except OSError:
                pass
            os.close(fd)
        return None

    def _adopt(self, st: os.stat_result) -> LineReader | None:
        for other in self._files.values():
            for r in other.old:
                if r.inode == st.st_ino and os.fstat(r.fd).st_dev == st.st_dev:
                    other.old.remove(r)
                    return r
        return None

    def _check_truncated(self, paths: set[str]) -> Iterator[SourceEvent]:
        for path in paths:
            t = self._files.get(path)
            if t is None or t.reader is None:
                continue
            try:
                if t.reader.truncated():
                    t.reader.restart()
                    yield Batch((), t.reader.position())
            except OSError as exc:
                yield from self._state(t, "error", _reason(exc))

    # -- reading ----------------------------------------------------------------------------

    def _read_once(self, t: _Tracked) -> tuple[list[SourceEvent], bool]:
        """One chunk from the oldest unfinished file behind this name; and whether bytes came.

        The replay comes first: its lines are older than anything after the stored position.
        """
        out: list[SourceEvent] = []
        if t.replay is not None:
            try:
                replayed = t.replay.read_chunk()
            except OSError as exc:
                log.warning("[%s] %s: replay stopped: %s", self._name, t.path, _reason(exc))
                replayed = None
            if replayed is not None:
                if replayed:
                    out.append(self._batch(t, replayed, None))
                return out, True
            t.replay.close()
            t.replay = None
        for old in list(t.old):
            try:
                lines, got = old.read_chunk()
            except OSError as exc:
                out.extend(self._state(t, "error", _reason(exc)))
                return out, False
            if got:
                if lines:
                    out.append(self._batch(t, lines, old.position()))
                return out, True
            if self._writer_moved_on(t, old):
                t.old.remove(old)
                old.close()
                if t.reader is not None:
                    out.append(Batch((), t.reader.position()))
        r = t.reader
        if r is None:
            return out, False
        try:
            lines, got = r.read_chunk()
        except OSError as exc:
            out.extend(self._state(t, "error", _reason(exc)))
            return out, False
        if got:
            if t.status is not None and t.status.state == "error":
                out.extend(self._readable(t))
            if lines:
                out.append(self._batch(t, lines, r.position()))
        return out, got

    @staticmethod
    def _writer_moved_on(t: _Tracked, old: LineReader) -> bool:
        """Whether a fully read old file can be closed: nothing will be written to it any more.

        The writer switched once the new file has data. Without a new file, a file that still
        has a name (renamed) may yet get lines until the writer reopens; a deleted one is closed
        at once, so we never pin the disk space of a deleted log.
        """
        try:
            if t.reader is not None:
                return t.reader.size() > 0
            return os.fstat(old.fd).st_nlink == 0
        except OSError:
            return True

    @staticmethod
    def _batch(t: _Tracked, lines: list[str], position: Position | None) -> Batch:
        src = t.path
        return Batch(tuple([LogLine(text, src) for text in lines]), position)

    # -- health -----------------------------------------------------------------------------

    def _state(self, t: _Tracked, state: StatusState, message: str = "") -> Iterator[SourceStatus]:
        if t.status is None or t.status.state != state or t.status.message != message:
            t.status = SourceStatus(t.path, state, message)
            yield t.status

    def _readable(self, t: _Tracked) -> Iterator[SourceStatus]:
        """The state of a file we can read: ``ok``, or ``polling`` when inotify ran out for it.

        ``polling`` is a warning, not an error: lines keep coming, only later (up to
        ``poll_interval``) and at the cost of a stat per poll; the message names the sysctl.
        """
        limit = self._no_hub or self._exhausted.get(os.path.dirname(t.path) or ".")
        if limit is None:
            return self._state(t, "ok")
        return self._state(t, "polling", limit)

    def _pattern_state(self, pat: str, state: StatusState, message: str) -> Iterator[SourceStatus]:
        old = self._pattern_status.get(pat)
        if old is None or old.state != state:
            st = self._pattern_status[pat] = SourceStatus(pat, state, message)
            yield st


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
