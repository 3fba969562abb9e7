"""Log sources: where lines come from (files, the systemd journal) and where reading stopped.

Owns turning the outside world into `Batch` es of `banish.events.LogLine` plus a resumable
position, and `SourceStatus` changes; must not match, decide or persist anything. The daemon
iterates each source's ``events()`` on its one asyncio loop.
"""

from banish.sources.base import (
    Batch,
    DateOf,
    JournalCursor,
    Position,
    Progress,
    Source,
    SourceEvent,
    SourceStatus,
)
from banish.sources.file import FileSource
from banish.sources.inotify import WatchHub
from banish.sources.journal import JournalSource, format_entry, parse_journalmatch

__all__ = [
    "Batch",
    "DateOf",
    "FileSource",
    "JournalCursor",
    "JournalSource",
    "Position",
    "Progress",
    "Source",
    "SourceEvent",
    "SourceStatus",
    "WatchHub",
    "format_entry",
    "parse_journalmatch",
]
