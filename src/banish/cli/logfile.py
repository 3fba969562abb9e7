"""Whole log files for the offline tools (``banish regex``, ``banish scan``), in whole-line
chunks, with what needs only the bytes worked out one chunk ahead by a forked helper.

On a big file a third of the work is the literal scan, the grouping of its hits into lines
and the dropping of lines that cannot matter (``ChunkMatcher.prescan``). That part needs only
the bytes, so a child process does it for chunk k+1 while this process matches chunk k, and
sends back the candidates (offsets and regex numbers, a few hundred kB per 8 MB chunk).
Matching state (sessions, dates) never leaves this process, so the results are those of an
in-process scan.

Owns the chunking of files and the helper's life. Must not be used from a process that runs
threads (the daemon): fork copies only the calling thread.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from ..match.chunks import Prescanned

CHUNK_BYTES = 8 << 20
PRESCAN_MIN_BYTES = 4 * CHUNK_BYTES
"""Smaller files are scanned in-process: a helper would cost more than it saves."""



def file_chunks(path: str, start: int = 0, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Whole-line chunks of a file from byte ``start``, read ``size`` bytes at a time; a last
    line without newline comes as its own piece."""
    with open(path, "rb") as fh:
        fh.seek(start)
        tail = b""
        while block := fh.read(size):
            block = tail + block
            cut = block.rfind(b"\n") + 1
            tail, block = block[cut:], block[:cut]
            if block:
                yield block
        if tail:
            yield tail


def chunks_with_candidates(path: str, prescan: Callable[[bytes], Prescanned] | None, *,
                           min_bytes: int = PRESCAN_MIN_BYTES, size: int = CHUNK_BYTES
                           ) -> Iterator[tuple[bytes, Prescanned | None]]:
    """``file_chunks(path)``, each with what ``prescan`` (``ChunkMatcher.prescan``, called in
    the helper on every chunk in order) made of it; None: the caller scans that chunk
    itself. ``min_bytes``: smaller files get no helper."""
    if prescan is None or not _helper_pays() or os.path.getsize(path) < min_bytes:
        for chunk in file_chunks(path, size=size):
            yield chunk, None
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper: never returns into the caller's code
        status = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            with open(write_end, "wb") as out:
                _helper(path, prescan, out, size)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    done = 0
    try:
        with open(read_end, "rb") as results, open(path, "rb") as fh:
            for offset, length, found in _results(results):
                chunk = os.pread(fh.fileno(), length, offset)
                if offset != done or len(chunk) != length:
                    break  # the file shrank under us: go on alone from where we are
                done += length
                yield chunk, found
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    # The helper stopped early (it failed, or the file changed): the rest in-process; and
    # whatever was appended while we matched, as a plain read would have seen it.
    for chunk in file_chunks(path, done, size):
        yield chunk, None


def _helper_pays() -> bool:
    """A helper needs fork and a second CPU to run on; on one CPU it only adds its pickling."""
    if not hasattr(os, "fork"):
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


def _helper(path: str, prescan: Callable[[bytes], Prescanned], out: BinaryIO,
            size: int) -> None:
    offset = 0
    for chunk in file_chunks(path, size=size):
        pickle.dump((offset, len(chunk), prescan(chunk)), out,
                    protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()  # the caller waits for exactly this chunk
        offset += len(chunk)


def _results(results: BinaryIO) -> Iterator[tuple[int, int, Prescanned]]:
    while True:
        try:
            # Our own child's output through a private pipe: nothing else can write there.
            yield pickle.load(results)  # noqa: S301
        except (EOFError, pickle.UnpicklingError):
            return
