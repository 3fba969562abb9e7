"""Linux inotify through ctypes, and one shared descriptor for every file source in the runtime.

Owns the three syscalls (inotify_init1, inotify_add_watch, inotify_rm_watch), decoding of the
kernel's event records, `WatchHub`, which multiplexes directory watches of many sources over
a single non-blocking descriptor registered with the asyncio loop, `shared_hub`, which hands
every source of a loop that same hub, and `exhaustion`, which names the kernel limit an
inotify failure ran into. Must not interpret events (rotation, truncation, globbing belong to
`banish.sources.file`) nor decide what to do when inotify is out of resources (the source
falls back to polling).

Why our own binding rather than the `asyncinotify` package: we need only these three calls and
a record parser (~100 lines); the daemon must share *one* descriptor between all jails because
``fs.inotify.max_user_instances`` defaults to 128 for the whole user; Debian 12 ships no
python3-asyncinotify, so a distro package of banish could not depend on it; and we want events
drained in one batch per readiness callback, not one awaited future per event.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

DIR_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
"""What a directory watch asks for: data written to a child, and every change of which names
point to which files (rotation, creation, deletion), plus the directory itself going away."""

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One kernel record. ``name`` is the child's name, empty for the watched directory itself
    and for queue overflow (``wd == -1``)."""

    wd: int
    mask: int
    cookie: int
    name: str


def parse_events(buf: bytes) -> list[InotifyEvent]:
    """Decode a buffer of back-to-back ``struct inotify_event`` records (names NUL-padded)."""
    events: list[InotifyEvent] = []
    pos = 0
    end = len(buf)
    while pos + _HEADER.size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(buf, pos)
        pos += _HEADER.size
        raw = buf[pos : pos + length].split(b"\0", 1)[0]
        pos += length
        events.append(InotifyEvent(wd, mask, cookie, os.fsdecode(raw)))
    return events


class _Libc:
    """The three libc entry points, loaded once; ctypes errno is per thread and safe to read."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.init1 = lib.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch = lib.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch = lib.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


_libc: _Libc | None = None


def _lib() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def _raise_errno(what: str, path: str | None = None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}", path)


class Inotify:
    """A non-blocking inotify descriptor: add/remove watches and drain pending records."""

    def __init__(self) -> None:
        try:
            lib = _lib()
        except (OSError, AttributeError) as exc:  # no libc / no inotify symbols (non-Linux)
            raise OSError(f"inotify unavailable: {exc}") from exc
        fd = lib.init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            _raise_errno("inotify_init1")
        self._fd = int(fd)

    def fileno(self) -> int:
        return int(self._fd)

    def add_watch(self, path: str, mask: int) -> int:
        wd = _lib().add_watch(self._fd, os.fsencode(path), mask)
        if wd < 0:
            _raise_errno("inotify_add_watch", path)
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        # EINVAL means the kernel already dropped the watch (directory deleted): not an error.
        _lib().rm_watch(self._fd, wd)

    def read_events(self) -> list[InotifyEvent]:
        """Everything queued right now; empty when nothing is."""
        chunks: list[bytes] = []
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        return parse_events(b"".join(chunks)) if chunks else []

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


DirCallback = Callable[[list[InotifyEvent]], None]


class DirWatch:
    """A subscription handle returned by `WatchHub.watch_dir`."""

    __slots__ = ("callback", "path", "wd")

    def __init__(self, path: str, wd: int, callback: DirCallback) -> None:
        self.path = path
        self.wd = wd
        self.callback = callback


WATCHES_EXHAUSTED = (
    "inotify watches exhausted (fs.inotify.max_user_watches); raise it with sysctl"
)
INSTANCES_EXHAUSTED = (
    "no inotify instance left (fs.inotify.max_user_instances); raise it with sysctl"
)


def exhaustion(exc: OSError) -> str | None:
    """The operator's words for an inotify failure caused by a per-user kernel limit, else None.

    ``inotify_add_watch`` fails with ENOSPC when ``max_user_watches`` is reached and
    ``inotify_init1`` with EMFILE when ``max_user_instances`` is (EMFILE also means the process
    ran out of descriptors; the sysctl is by far the likelier cause beside another inotify user
    such as fail2ban, and the message names what to check). Both are counted per user across
    every process of that user, so they can run out because of someone else and come back later.
    """
    if exc.errno == errno.ENOSPC:
        return WATCHES_EXHAUSTED
    if exc.errno == errno.EMFILE:
        return INSTANCES_EXHAUSTED
    return None


class WatchHub:
    """One inotify descriptor shared by every file source of an asyncio loop.

    Several sources may watch the same directory (the kernel then returns the same watch
    descriptor); the hub counts subscribers and removes the kernel watch with the last one.
    Callbacks run on the loop, inside the reader callback, with all events for their watch
    from one drain; a queue overflow (events lost) is delivered to every subscriber so each can
    rescan. Must be created and used from inside the running loop.

    A hub made here is the caller's to `close`; `shared_hub` gives out the loop's common hub,
    which each user hands back with `release` instead.
    """

    def __init__(self) -> None:
        self._inotify = Inotify()
        self._loop = asyncio.get_running_loop()
        self._subs: dict[int, list[DirWatch]] = {}
        self._loop.add_reader(self._inotify.fileno(), self._on_readable)
        self._closed = False
        self._users = 0  # references handed out by shared_hub() and not yet released

    @property
    def closed(self) -> bool:
        return self._closed

    def watch_dir(self, path: str, callback: DirCallback) -> DirWatch:
        """Watch a directory's children; raises OSError (ENOENT, EACCES, ENOSPC...)."""
        wd = self._inotify.add_watch(path, DIR_MASK)
        handle = DirWatch(path, wd, callback)
        self._subs.setdefault(wd, []).append(handle)
        return handle

    def unwatch(self, handle: DirWatch) -> None:
        subs = self._subs.get(handle.wd)
        if not subs or handle not in subs:
            return
        subs.remove(handle)
        if not subs:
            del self._subs[handle.wd]
            self._inotify.rm_watch(handle.wd)

    def _on_readable(self) -> None:
        events = self._inotify.read_events()
        by_wd: dict[int, list[InotifyEvent]] = {}
        overflow = False
        for ev in events:
            if ev.mask & IN_Q_OVERFLOW:
                overflow = True
                continue
            by_wd.setdefault(ev.wd, []).append(ev)
        if overflow:
            lost = InotifyEvent(-1, IN_Q_OVERFLOW, 0, "")
            for subs in list(self._subs.values()):
                for h in list(subs):
                    h.callback([lost])
        for wd, evs in by_wd.items():
            subs = self._subs.get(wd, [])
            for h in list(subs):
                h.callback(evs)
            if any(e.mask & IN_IGNORED for e in evs):
                # The kernel removed the watch (directory gone or unmounted); the wd is dead.
                self._subs.pop(wd, None)

    def release(self) -> None:
        """Give back one reference taken with `shared_hub`; the last one closes the hub."""
        with _shared_lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.close()

    def close(self) -> None:
        """Drop every watch and the descriptor. Safe after the loop itself was closed."""
        with _shared_lock:
            if self._closed:
                return
            self._closed = True
            if _shared.get(self._loop) is self:
                del _shared[self._loop]
        if not self._loop.is_closed():
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()
        self._subs.clear()


# The loop's hub, by loop. A lock because the daemon's loop is not the only possible one: tests
# and tools may run sources on loops in other threads, each of which gets its own hub.
_shared: dict[asyncio.AbstractEventLoop, WatchHub] = {}
_shared_lock = threading.Lock()


def shared_hub() -> WatchHub:
    """The running loop's one hub, created by its first user; pair each call with `release`.

    Why process-wide rather than one hub per source: ``fs.inotify.max_user_instances``
    (128 by default) is shared by every process of the user, and one descriptor per jail used
    up most of it, so that another inotify user (fail2ban during a migration, an editor)
    could not start. Raises OSError when no descriptor can be made; `exhaustion` tells a
    limit from inotify being unavailable. A hub left behind by a loop closed without
    releasing it is closed here, so descriptors do not pile up across loops.
    """
    loop = asyncio.get_running_loop()
    with _shared_lock:
        stale = [h for lp, h in _shared.items() if lp.is_closed()]
    for h in stale:
        h.close()
    with _shared_lock:
        hub = _shared.get(loop)
        if hub is None:
            hub = WatchHub()  # inotify_init1 may fail (EMFILE): nothing is registered then
            _shared[loop] = hub
        hub._users += 1
        return hub
