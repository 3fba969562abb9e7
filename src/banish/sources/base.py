"""The contract every log source keeps: what it yields, what it reports, how it is resumed.

Owns the small vocabulary shared by the file and journal sources and the daemon: `Batch` (lines
plus the position to persist after them, or none for a replay), `SourceStatus` (a health change
the daemon shows in `banish status`), `Position` / `JournalCursor` (what the store saves), and
the `Source` protocol.
Must not do I/O, read clocks, or know about matching, jails or the store's schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from banish.events import LogLine

JournalCursor: TypeAlias = str
"""An opaque systemd journal cursor; seeking to it resumes right after the entry it names."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a file source stood, so that a restart neither re-reads nor skips lines.

    ``offset`` is always the start of a line that was not yet delivered (a partial last line is
    never counted as read). ``first_line_hash`` fingerprints the head of the file (see
    `banish.sources.linereader.head_hash`): the inode alone cannot tell a rotated file from the
    original because inode numbers are reused as soon as a file is deleted.
    """

    path: str
    inode: int
    offset: int
    first_line_hash: str


StatusState: TypeAlias = Literal["ok", "polling", "missing", "error"]


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A change in a source's health, yielded when it happens and kept for `status()`.

    ``name`` is the file path (or the glob pattern while nothing matches it) or the journal
    source's name. A source in ``error`` keeps retrying on its own; nothing here is fatal.

    ``polling`` is a warning: the file is read as usual, but found changed by a timer because
    inotify ran into a kernel limit (``message`` names it). It is not ``ok`` so that the daemon
    logs it and `banish status` lists it, and not ``error`` because no line is missed.
    """

    name: str
    state: StatusState
    message: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    """Lines from one read of one file (or journal), in order, and the position after them.

    The daemon persists ``position`` only after the lines were processed, so a crash in between
    re-reads the batch instead of losing it. A batch may have no lines when only the position
    moved (rotation, truncation, a skipped over-long line).

    ``position`` is None for a *replay*: lines logged within ``since`` and before a stored
    position, which a previous run already counted. Failure windows live in memory only, so a
    restarted daemon gets them again once, to rebuild its windows exactly (an address with
    ``maxretry - 1`` failures before a crash and one after it is banned; one with
    ``maxretry - 1`` before and none after is not). They are processed like any lines, but
    there is nothing to persist after them: the stored position is already past them and must
    never move back. A source delivers the replay of a file (or journal) before any other
    batch of it.
    """

    lines: tuple[LogLine, ...]
    position: Position | JournalCursor | None


SourceEvent: TypeAlias = Batch | SourceStatus

DateOf: TypeAlias = Callable[[str], float | None]
"""Finds the time stamp of a log line (epoch seconds), or None when the line has none."""

Progress: TypeAlias = Callable[[str, int, int], None]
"""Called as ``progress(path, bytes_done, bytes_total)`` while a big file is searched."""


class Source(Protocol):
    """What the daemon drives: one async generator of events per source, and a health snapshot.

    ``events()`` runs until it is closed (``aclose()``, or cancelling the task iterating it);
    closing releases every descriptor and watch the source holds. Each run delivers every line
    at most once: a source resumed at a stored position replays the lines between ``since``
    and that position (``Batch.position`` None), then continues at the position itself.
    """

    @property
    def name(self) -> str: ...

    def events(self) -> AsyncIterator[SourceEvent]: ...

    def status(self) -> tuple[SourceStatus, ...]: ...
