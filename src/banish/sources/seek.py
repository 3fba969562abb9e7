"""Finding where "recent" starts in a big, time-ordered log without reading all of it.

Owns `find_start`: a binary search over byte offsets (seek, skip to the next line start, parse
the first dated line there) that narrows the file to a small window, then a short linear scan.
It is how a file source with no stored position reads only the last ``findtime`` of existing
content. Must not keep descriptors, read clocks (``since`` is given) or know any date format
(``date_of`` is given).

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
        chunk = os.pread(fd, _SCAN_CHUNK, pos)
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
