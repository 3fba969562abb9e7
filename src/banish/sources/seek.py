"""Finding where "recent" starts in a big, time-ordered log, and reading a part of it again.

Owns `find_start`: a binary search over byte offsets (seek, skip to the next line start, parse
the first dated line there) that narrows the file (or its first ``size`` bytes) to a small
window, then a short linear scan. It is how a file source with no stored position reads only
the last ``findtime`` of existing content, and how one resumed at a stored position finds the
lines of the last ``findtime`` before it. Owns `RangeReader`: the lines of one byte range, read
again a chunk at a time (that replay, see `banish.sources.file`). Must not read clocks
(``since`` is given) or know any date format (``date_of`` is given); `find_start` keeps no
descriptor, a `RangeReader` only its own duplicate.

Logs are only *mostly* ordered (several writers, clock steps): the search assumes order only to
choose a window, and the linear scan then returns the first line dated ``>= since`` after the
window start, so a small disorder costs at most a few extra lines.
"""

from __future__ import annotations

import os

from banish.sources.base import DateOf, Progress

WINDOW = 64 * 1024
"""Below this many bytes between the bounds, a linear scan is cheaper than more probes."""

PROBE_MAX = 64 * 1024
"""How far one probe looks for a dated line before treating the region as undated."""

_SCAN_CHUNK = 256 * 1024


def _decode(raw: bytes, encoding: str) -> str:
    text = raw.decode(encoding, "replace")
    return text[:-1] if text.endswith("\r") else text


def _next_line_start(fd: int, pos: int, size: int) -> int:
    """The first line start at or after ``pos`` (``size`` when there is none)."""
    if pos <= 0:
        return 0
    at = pos - 1
    while at < size:
        chunk = os.pread(fd, 4096, at)
        if not chunk:
            break
        nl = chunk.find(b"\n")
        if nl >= 0:
            return at + nl + 1
        at += len(chunk)
    return size


def _first_dated(
    fd: int, start: int, size: int, date_of: DateOf, encoding: str
) -> tuple[int, int, float] | None:
    """(line start, next line start, date) of the first dated complete line from ``start``."""
    data = os.pread(fd, min(PROBE_MAX, size - start), start)
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return None
        d = date_of(_decode(data[pos:nl], encoding))
        if d is not None:
            return start + pos, start + nl + 1, d
        pos = nl + 1


def find_start(
    fd: int,
    size: int,
    since: float,
    date_of: DateOf,
    *,
    encoding: str = "utf-8",
    path: str = "",
    progress: Progress | None = None,
) -> int:
    """Offset of the first complete line dated ``>= since``; end of the last complete line if
    there is none. Undated lines (continuations) just before it are skipped with the older ones.
    Only the first ``size`` bytes are read, even if the file is longer (a replay stops at a
    stored position).

    Cost: about log2(size / WINDOW) probes of a few KiB, then one scan of a window; an undated
    file is scanned whole (``progress`` reports it).
    """
    lo, hi = 0, size
    while hi - lo > WINDOW:
        mid = (lo + hi) // 2
        p = _next_line_start(fd, mid, size)
        probe = _first_dated(fd, p, size, date_of, encoding) if p < size else None
        if probe is not None and probe[2] < since:
            lo = probe[1]
        else:
            # A date >= since, or nothing datable: the start is at or before this probe (or the
            # final scan walks past it; the lower bound is the only one correctness relies on).
            hi = mid
        if progress is not None:
            progress(path, size - (hi - lo), size)
    return _scan(fd, lo, size, since, date_of, encoding, path, progress)


def _scan(
    fd: int,
    pos: int,
    size: int,
    since: float,
    date_of: DateOf,
    encoding: str,
    path: str,
    progress: Progress | None,
) -> int:
    carry = b""
    base = pos  # file offset of carry[0]
    while pos < size:
        chunk = os.pread(fd, min(_SCAN_CHUNK, size - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        data = carry + chunk
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            d = date_of(_decode(data[start:nl], encoding))
            if d is not None and d >= since:
                if progress is not None:
                    progress(path, size, size)
                return base + start
            start = nl + 1
        carry = data[start:]
        base += start
        if len(carry) > PROBE_MAX:  # an enormous line: it cannot be dated usefully; skip it
            base += len(carry)
            carry = b""
            pos = _next_line_start(fd, base, size)
            base = pos
        if progress is not None:
            progress(path, min(pos, size), size)
    return base


class RangeReader:
    """The lines of bytes ``[start, end)`` of an open file, one bounded chunk at a time.

    Reads from its own duplicate of ``fd``: the file source may close or hand over the
    original (rotation, deletion) while a replay is still under way. Lines are cut at
    ``max_line`` like `banish.sources.linereader.LineReader` cuts them, so a line reads the
    same replayed as it read live. ``end`` is a stored position, hence a line start; bytes of
    an unfinished line left before it (a position inside an over-long line) are dropped, since
    reading resumes at ``end`` inside that line anyway. A file that shrank under us ends the
    range early.
    """

    def __init__(
        self,
        fd: int,
        start: int,
        end: int,
        *,
        read_size: int,
        max_line: int,
        encoding: str,
    ) -> None:
        self.fd = os.dup(fd)
        self.pos = start
        self.end = end
        self._read_size = read_size
        self._max_line = max_line
        self._encoding = encoding
        self._carry = b""
        self._skipping = False

    def read_chunk(self) -> list[str] | None:
        """The complete lines of the next chunk (possibly none); None once the range is done
        (the descriptor is closed then)."""
        n = min(self._read_size, self.end - self.pos)
        data = os.pread(self.fd, n, self.pos) if n > 0 and self.fd >= 0 else b""
        if not data:
            self.close()
            return None
        self.pos += len(data)
        cap = self._max_line
        if self._skipping:  # the rest of a line already delivered cut at max_line
            nl = data.find(b"\n")
            if nl < 0:
                return []
            data = data[nl + 1 :]
            self._skipping = False
        parts = (self._carry + data).split(b"\n")
        self._carry = parts.pop()
        lines = [_decode(p[:cap], self._encoding) for p in parts]
        if len(self._carry) >= cap:
            lines.append(_decode(self._carry[:cap], self._encoding))
            self._carry, self._skipping = b"", True
        return lines

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
