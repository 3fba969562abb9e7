"""Turning the bytes of one open log file into complete, decoded lines, with a bounded buffer.

Owns one file descriptor and its read state: the committed offset (start of the first byte not
yet delivered as a line), the partial last line held until its newline arrives, truncation of
over-long lines, decoding that never fails, and the head fingerprint used to recognise the file
after a restart or a copytruncate. Must not decide *which* file to read (rotation, globbing and
watching belong to `banish.sources.file`), and must not block on anything but a regular file.

Lines are split on b"\\n", so the encoding must be ASCII-compatible (UTF-8, Latin-1...).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

from banish.sources.base import Position

HEAD_MAX = 1024
"""At most this many leading bytes (and never past the first newline) are fingerprinted."""


def head_hash(fd: int, upto: int) -> str:
    """Fingerprint of the file's first line, using only bytes before ``upto``.

    Only bytes already consumed (before the committed offset) are hashed, because they cannot
    change while the file is the same file; hashing a first line that is still being written
    would make the fingerprint move and look like a rotation. ``""`` when nothing was consumed.
    """
    return _head(fd, upto)[0]


def _head(fd: int, upto: int) -> tuple[str, bool]:
    """The fingerprint, and whether it is final (a longer ``upto`` would not change it)."""
    n = min(upto, HEAD_MAX)
    if n <= 0:
        return "", False
    head = os.pread(fd, n, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    final = nl >= 0 or len(head) == HEAD_MAX
    return hashlib.blake2b(head, digest_size=16).hexdigest(), final


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without ever blocking (a FIFO would block ``open``).

    Raises OSError: ENOENT, EACCES..., or EINVAL for a path that is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return fd, st
    except BaseException:
        os.close(fd)
        raise


class LineReader:
    """Reads one open file from an offset, a bounded chunk at a time.

    The buffer never exceeds ``max_line + read_size`` bytes: a line that reaches ``max_line``
    bytes without a newline is delivered truncated and the rest of it is skipped.
    """

    def __init__(
        self,
        path: str,
        fd: int,
        inode: int,
        offset: int,
        *,
        max_line: int,
        read_size: int,
        encoding: str,
    ) -> None:
        self.path = path
        self.fd = fd
        self.inode = inode
        self.committed = offset
        self.read_pos = offset
        self._max_line = max_line
        self._read_size = read_size
        self._encoding = encoding
        self._partial = bytearray()
        self._skipping = False
        self._hash = ""
        self._hash_final = False

    def read_chunk(self) -> tuple[list[str], bool]:
        """Read at most one chunk; return the complete lines in it and whether bytes arrived."""
        data = os.pread(self.fd, self._read_size, self.read_pos)
        if not data:
            return [], False
        self.read_pos += len(data)
        return self._split(data), True

    def _split(self, buf: bytes) -> list[str]:
        lines: list[str] = []
        cap = self._max_line
        if self._skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self.committed += len(buf)
                return lines
            self.committed += nl + 1
            buf = buf[nl + 1 :]
            self._skipping = False
        if self._partial:
            nl = buf.find(b"\n")
            if nl < 0:
                self._partial += buf
                if len(self._partial) >= cap:
                    lines.append(self._decode(bytes(self._partial[:cap])))
                    self.committed += len(self._partial)
                    self._partial.clear()
                    self._skipping = True
                return lines
            first = bytes(self._partial) + buf[:nl]
            self.committed += len(self._partial) + nl + 1
            self._partial.clear()
            buf = buf[nl + 1 :]
            lines.append(self._decode(first[:cap]))
        last_nl = buf.rfind(b"\n")
        rest = buf
        if last_nl >= 0:
            text = buf[:last_nl].decode(self._encoding, "replace")
            self.committed += last_nl + 1
            parts = text.split("\n")
            if last_nl >= cap:  # only then can one of the lines exceed the cap
                parts = [p[:cap] for p in parts]
            if "\r" in text:
                parts = [p[:-1] if p.endswith("\r") else p for p in parts]
            lines.extend(parts)
            rest = buf[last_nl + 1 :]
        if rest:
            if len(rest) >= cap:
                lines.append(self._decode(rest[:cap]))
                self.committed += len(rest)
                self._skipping = True
            else:
                self._partial += rest
        return lines

    def _decode(self, raw: bytes) -> str:
        text = raw.decode(self._encoding, "replace")
        return text[:-1] if text.endswith("\r") else text

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def at_eof(self) -> bool:
        return self.size() <= self.read_pos

    def head(self) -> str:
        """The head fingerprint at the committed offset (cached once it can no longer change)."""
        if self._hash_final:
            return self._hash
        self._hash, self._hash_final = _head(self.fd, self.committed)
        return self._hash

    def truncated(self) -> bool:
        """True when the file was truncated under us (copytruncate), even if it grew again."""
        if self.size() < self.read_pos:
            return True
        if self._hash_final:
            return head_hash(self.fd, self.committed) != self._hash
        return False

    def restart(self) -> None:
        """Start over at offset 0 of the same descriptor (after a truncation)."""
        self.committed = self.read_pos = 0
        self._partial.clear()
        self._skipping = False
        self._hash = ""
        self._hash_final = False

    def position(self) -> Position:
        return Position(self.path, self.inode, self.committed, self.head())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
