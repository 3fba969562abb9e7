"""The store contract: what banish keeps across restarts, as typed values and one Protocol.

Owns the vocabulary of persistence beyond the ban itself (``BanCount``, ``FilePosition``; a ban is
``banish.events.Ban`` everywhere), the ``Store`` Protocol every backend implements, and
``StoreError``.
Must not do I/O, read the clock or know about SQL: a backend (``sqlite.py`` now, a PostgreSQL
store for fleets later) supplies all of that. Times are POSIX seconds passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from banish.errors import BanishError
from banish.events import PERMANENT, Ban, BanKey

__all__ = ["PERMANENT", "Ban", "BanCount", "BanKey", "FilePosition", "OutboxEvent", "Store",
           "StoreError"]

class StoreError(BanishError):
    """The ban database cannot be used: unreadable, corrupt, foreign, or from a newer banish.

    Carries the file so the CLI and the daemon print one line naming it, never a traceback.
    """

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = " ".join(reason.split())
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True, slots=True)
class BanCount:
    """What ``bantime.increment`` needs about an address's earlier bans within a period."""

    count: int
    last_bantime: int | None = None
    last_banned_at: float | None = None


class OutboxEvent(NamedTuple):
    """A decision waiting in this node's fleet outbox (``seq`` 0 until it is queued): the
    addresses banned (or unbanned) in one jail at one moment for one bantime -- a log's ban
    is one address, a 100,000-address blocklist one row.

    ``banned_at`` is this node's clock: the sender turns it into an age, so the database's
    clock decides absolute ends."""

    seq: int
    kind: str
    jail: str
    addresses: tuple[str, ...]
    bantime: int
    banned_at: float


@dataclass(frozen=True, slots=True)
class FilePosition:
    """Where reading a log file stopped, and how to recognise that it is still the same file.

    ``head_hash`` is an opaque digest of the file's first line, chosen by the file source: a
    rotated file has a new inode or a different first line, so its offset must not be reused.
    """

    path: str
    inode: int
    offset: int
    head_hash: str


@runtime_checkable
class Store(Protocol):
    """The persistent state of one banish host.

    Every method is a short, synchronous transaction, fit to call from the daemon's event loop.
    Methods that write return only after the data is committed: the daemon relies on this to
    record a ban *before* reporting it applied. Calls may come from more than one thread (the
    daemon commits a big ban batch in a worker thread while the firewall applies it), so an
    implementation serializes them. Kept free of SQLite specifics so that a PostgreSQL store
    shared by many hosts can implement it unchanged.
    """

    def add_bans(self, bans: Sequence[Ban], outbox: Sequence[OutboxEvent] = ()) -> None:
        """Record bans in history and as active, all or nothing, committed on return.

        If the key is already active, the ban that ends later (permanent wins) stays active, so
        a shorter ban never cuts an existing one short. History keeps every ban. ``outbox``:
        the fleet's share of them, queued in the same transaction (a crash keeps both or
        neither).
        """
        ...

    def remove_bans(self, keys: Iterable[BanKey], *, forget: bool = False) -> int:
        """End active bans (an unban); with ``forget`` also drop their history, so that
        ``bantime.increment`` starts over for them. Returns how many active bans were removed."""
        ...

    def active_bans(self, now: float, jail: str | None = None) -> list[Ban]:
        """Bans still in force at ``now`` (permanent, or ending after ``now``), oldest first.

        An active ban carries what decides its end (address, jail, banned_at, bantime, origin);
        its failures and matches stay in the history."""
        ...

    def expired_bans(self, now: float) -> list[Ban]:
        """Bans that ended at or before ``now`` but are still recorded active; reads only."""
        ...

    def release_expired(self, now: float) -> list[Ban]:
        """Remove and return exactly the bans ``expired_bans(now)`` would list."""
        ...

    def ban_history(
        self, address: str | None = None, jail: str | None = None, since: float | None = None
    ) -> list[Ban]:
        """Recorded bans, optionally for one address / one jail / from ``since`` on, oldest
        first."""
        ...

    def ban_count(self, address: str, jail: str | None, since: float) -> BanCount:
        """Bans of ``address`` at or after ``since``, in ``jail`` or (None) over all jails."""
        ...

    def set_position(self, position: FilePosition) -> None: ...

    def get_position(self, path: str) -> FilePosition | None: ...

    def set_cursor(self, jail: str, cursor: str) -> None:
        """Remember a journal cursor for ``jail`` (opaque text from systemd)."""
        ...

    def get_cursor(self, jail: str) -> str | None: ...

    def purge(self, older_than: float, limit: int | None = None) -> int:
        """Delete history of bans made before ``older_than`` (dbpurgeage), except the record
        of a ban that is still active; active bans are never touched. Returns rows deleted.

        ``limit`` deletes at most that many (oldest first), so the daemon can purge a large
        backlog in slices and let its event loop run in between.
        """
        ...

    def compact(self) -> None:
        """Give space freed by ``purge`` back, so the store does not grow without bound."""
        ...

    def close(self) -> None: ...
