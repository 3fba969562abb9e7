"""The notification actions' durable outboxes, in the SQLite store (table ``notify_outbox``).

Owns the queries of the outbox every native notification action keeps (``banish.notify``):
items are added when the ban event is handled, read in order by the action's sender, and
deleted (or counted as sent, ``done``) only after the receiver took them. So a pending item
survives a restart, a crash or kill -9 and is sent once it can be; a receiver that is away
only makes the outbox grow (bounded by each action's ``maxage``).

A row holds up to ``CHUNK`` items of one event, encoded as one JSON array (with the event's
kind, reason and time beside it): a 100,000-ban bulk is 100 rows written in one transaction,
not 100,000 statements, and the sender reads a bounded slice of rows. Items are opaque here;
the notifier encodes them (`encode_chunks` only cuts and serialises).

Shares the `SqliteStore`'s connection and lock (its ``_write`` / ``_read``), so a call is one
transaction that may run in a worker thread like the store's own, and nothing grows
``store/sqlite.py``. The table comes from that file's migration 2 -> 3. Must not know what an
item means or decide when to send.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .sqlite import SqliteStore

CHUNK = 1000
"""Items per row."""


class OutboxRow(NamedTuple):
    """One row: ``items[done:]`` are still to be sent; ``kind``, ``reason`` and ``time`` are
    those of the event the items came from."""

    seq: int
    queued_at: float
    done: int
    kind: str
    reason: str
    time: float
    items: list[Any]


def encode_chunks(items: Sequence[Any]) -> list[tuple[int, str]]:
    """(count, JSON) per chunk of ``items``. JSON's C encoder writes tuples (a `Ban` is one)
    as arrays; a read-only mapping (a ban's ``fields``) goes through ``dict``."""
    return [(len(chunk), json.dumps(chunk, separators=(",", ":"), default=dict))
            for chunk in (items[i:i + CHUNK] for i in range(0, len(items), CHUNK))]


class Backlog(NamedTuple):
    items: int
    oldest: float | None
    """When the oldest waiting item was queued (None: nothing waits)."""


class NotifyOutbox:
    """The outbox rows of every notification action, by action name."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def add(self, action: str, queued_at: float, event: tuple[str, str, float],
            chunks: Sequence[tuple[int, str]]) -> None:
        """Queue the encoded ``chunks`` (`encode_chunks`) of one event (kind, reason, time)
        for ``action``; committed when this returns."""
        if not chunks:
            return
        rows = [(action, queued_at, *event, count, text) for count, text in chunks]
        with self._store._write("cannot queue notifications") as conn:
            conn.executemany("INSERT INTO notify_outbox (action, queued_at, kind, reason, time, "
                             "count, items) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def pending(self, action: str, limit: int) -> list[OutboxRow]:
        """The oldest rows of ``action`` holding at least ``limit`` unsent items (or all)."""
        out: list[OutboxRow] = []
        total, after = 0, 0
        while total < limit:
            rows = self._store._read(
                "cannot read the notification outbox",
                "SELECT seq, queued_at, done, kind, reason, time, items FROM notify_outbox "
                "WHERE action = ? AND seq > ? ORDER BY seq LIMIT ?", [action, after, 8])
            if not rows:
                break
            for seq, queued_at, done, kind, reason, when, items in rows:
                out.append(OutboxRow(seq, queued_at, done, kind, reason, when, json.loads(items)))
                total += len(out[-1].items) - done
                after = seq
                if total >= limit:
                    break
        return out

    def advance(self, action: str, finished: Iterable[int], partial: tuple[int, int] | None
                ) -> None:
        """After a send: delete the ``finished`` rows; ``partial`` (seq, done) counts items
        sent from a row that still has more. One transaction."""
        seqs = list(finished)
        with self._store._write("cannot update the notification outbox") as conn:
            if seqs:
                conn.execute("DELETE FROM notify_outbox WHERE action = ? AND seq IN "
                             "(SELECT value FROM json_each(?))", [action, json.dumps(seqs)])
            if partial is not None:
                conn.execute("UPDATE notify_outbox SET done = ? WHERE action = ? AND seq = ?",
                             [partial[1], action, partial[0]])

    def backlog(self, action: str) -> Backlog:
        rows = self._store._read(
            "cannot read the notification outbox",
            "SELECT coalesce(sum(count - done), 0), min(queued_at) FROM notify_outbox "
            "WHERE action = ?", [action])
        return Backlog(int(rows[0][0]), rows[0][1])

    def drop_older(self, action: str, before: float) -> int:
        """Forget rows queued before ``before``; returns how many items were unsent."""
        with self._store._write("cannot update the notification outbox") as conn:
            lost = conn.execute("SELECT coalesce(sum(count - done), 0) FROM notify_outbox "
                                "WHERE action = ? AND queued_at < ?", [action, before])
            count = int(lost.fetchone()[0])
            conn.execute("DELETE FROM notify_outbox WHERE action = ? AND queued_at < ?",
                         [action, before])
        return count

    def actions(self) -> dict[str, int]:
        """Every action with waiting items (configured or not any more) -> item count."""
        rows = self._store._read("cannot read the notification outbox",
                                 "SELECT action, sum(count - done) FROM notify_outbox "
                                 "GROUP BY action")
        return {str(a): int(n) for a, n in rows}
