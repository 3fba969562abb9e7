"""The SQLite store: one local database file in WAL mode, with a versioned schema.

Owns the SQL, the schema and its migrations, the durability settings, and turning every
sqlite3 failure into a one-line ``StoreError`` that names the file. Must not read the clock
or hold state between calls beyond the connection. Every call holds one lock for its whole
transaction, so the daemon may run a call in a worker thread: it commits a 100,000-ban batch
there while the firewall applies the same batch (sqlite3 releases the GIL while SQLite works).

Durability: WAL with ``synchronous=NORMAL`` (the default here). A commit is written to the WAL
file before ``add_bans`` returns, so it survives the process being killed (kill -9, OOM, a
crash); the WAL is fsynced only at checkpoints, so a power loss may drop the last commits. We
accept that by default because a power loss also empties the kernel's firewall sets, and WAL
loses only a *suffix* of transactions: the database comes back as a consistent earlier state
(file positions roll back with the bans), and the daemon re-reads those log lines and bans
again. ``synchronous="FULL"`` adds an fsync per commit for those who want power-loss
durability; bans are batched, so the cost is one fsync per batch.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from banish.store import insight as insight_schema
from banish.store.base import Ban, BanCount, BanKey, FilePosition, OutboxEvent, StoreError

APPLICATION_ID = 0x62616E69  # "bani": marks the file as banish's, see ``_check_ownership``
MAX_MATCH_CHARS = 2000
"""A stored matched line is cut to this many characters, so one hostile line cannot bloat
the history."""

Migration = Callable[[sqlite3.Connection], None]


def _statements(*sql: str) -> Migration:
    def run(conn: sqlite3.Connection) -> None:
        for statement in sql:
            conn.execute(statement)

    return run


# MIGRATIONS[i] upgrades a database from schema version i to i + 1. Append only: never edit a
# released step, since databases in the field already ran it.
MIGRATIONS: list[Migration] = [
    _statements(
        f"PRAGMA application_id = {APPLICATION_ID}",
        """CREATE TABLE ban_history (
            id        INTEGER PRIMARY KEY,
            address   TEXT    NOT NULL,
            jail      TEXT    NOT NULL,
            banned_at REAL    NOT NULL,
            bantime   INTEGER NOT NULL,
            failures  INTEGER NOT NULL,
            matches   TEXT,
            origin    TEXT    NOT NULL
        )""",
        # ban_count and unban-with-forget look up one address; purge walks by time.
        "CREATE INDEX ban_history_address ON ban_history (address, banned_at)",
        "CREATE INDEX ban_history_banned_at ON ban_history (banned_at)",
        """CREATE TABLE active_bans (
            address    TEXT    NOT NULL,
            jail       TEXT    NOT NULL,
            banned_at  REAL    NOT NULL,
            bantime    INTEGER NOT NULL,
            expires_at REAL,
            origin     TEXT    NOT NULL,
            PRIMARY KEY (address, jail)
        ) WITHOUT ROWID""",
        "CREATE INDEX active_bans_expires_at ON active_bans (expires_at)",
        """CREATE TABLE file_positions (
            path      TEXT    PRIMARY KEY,
            inode     INTEGER NOT NULL,
            offset    INTEGER NOT NULL,
            head_hash TEXT    NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE journal_cursors (
            jail   TEXT PRIMARY KEY,
            cursor TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    # 1 -> 2: the fleet's durable outbox (events wait here while PostgreSQL is away, sent in
    # seq order and deleted once the database holds them) and small named values (the fleet
    # cursor).
    _statements(
        """CREATE TABLE fleet_outbox (
            seq       INTEGER PRIMARY KEY AUTOINCREMENT,
            kind      TEXT    NOT NULL,
            jail      TEXT    NOT NULL,
            addresses TEXT    NOT NULL,
            count     INTEGER NOT NULL,
            bantime   INTEGER NOT NULL,
            banned_at REAL    NOT NULL
        )""",
        """CREATE TABLE named_values (
            name  TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    # 2 -> 3: each notification action's durable outbox (store/notify_outbox.py): a row holds
    # up to a chunk of one event's bans as JSON (kind, reason, time: the event's); ``done``
    # counts the ones already sent.
    _statements(
        """CREATE TABLE notify_outbox (
            seq       INTEGER PRIMARY KEY AUTOINCREMENT,
            action    TEXT    NOT NULL,
            queued_at REAL    NOT NULL,
            kind      TEXT    NOT NULL,
            reason    TEXT    NOT NULL,
            time      REAL    NOT NULL,
            count     INTEGER NOT NULL,
            done      INTEGER NOT NULL DEFAULT 0,
            items     TEXT    NOT NULL
        )""",
        "CREATE INDEX notify_outbox_action ON notify_outbox (action, seq)",
    ),
    # insight: where banned addresses come from, and the user names bans captured
    # (store/insight.py owns these tables and their queries).
    insight_schema.MIGRATION,
]

# The whole batch is one JSON parameter: one statement, so sqlite3 lets go of the GIL for all
# of SQLite's work (executemany takes it back for every row, and then waits on a busy event
# loop thread each time). JSON numbers round-trip floats exactly (tests/property/test_store_model.py).
# Rows go in by address, so the address index and then active_bans' key fill in order: a fifth
# faster at 100,000 bans. (The order of ids within one batch means nothing.)
_ADD_HISTORY = """INSERT INTO ban_history
    (address, jail, banned_at, bantime, failures, matches, origin)
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
           json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
           json_extract(value, '$[6]')
    FROM json_each(?) ORDER BY json_extract(value, '$[0]'), key"""
# A bulk load (a blocklist, `banish ban JAIL -`) is one decision for many addresses: only the
# addresses travel as JSON, the rest is bound once. A third less work for SQLite than the above.
_ADD_HISTORY_SHARED = """INSERT INTO ban_history
    (address, jail, banned_at, bantime, failures, matches, origin)
    SELECT value, ?, ?, ?, ?, ?, ? FROM json_each(?) ORDER BY value, key"""
# Copies the batch just added to history (ids from ?) into active_bans, in SQL rather than a
# second Python round of binding. A ban that ends later (or never) replaces the active one; a
# shorter one leaves it alone. (The SELECT needs its WHERE clause anyway: without one, SQLite
# would parse ON CONFLICT as part of a join.)
_ADD_ACTIVE = """INSERT INTO active_bans (address, jail, banned_at, bantime, expires_at, origin)
    SELECT address, jail, banned_at, bantime,
           CASE WHEN bantime < 0 THEN NULL ELSE banned_at + bantime END, origin
    FROM ban_history WHERE id >= ? ORDER BY id
    ON CONFLICT (address, jail) DO UPDATE SET
        banned_at = excluded.banned_at, bantime = excluded.bantime,
        expires_at = excluded.expires_at, origin = excluded.origin
    WHERE active_bans.expires_at IS NOT NULL
      AND (excluded.expires_at IS NULL OR excluded.expires_at > active_bans.expires_at)"""
_ACTIVE = """SELECT address, jail, banned_at, bantime, origin FROM active_bans
    WHERE (expires_at IS NULL OR expires_at > ?1) AND (?2 IS NULL OR jail = ?2)
    ORDER BY banned_at, address, jail"""
_EXPIRED = """SELECT address, jail, banned_at, bantime, origin FROM active_bans
    WHERE expires_at <= ? ORDER BY expires_at, address, jail"""
_OUTBOX_ADD = """INSERT INTO fleet_outbox (kind, jail, addresses, count, bantime, banned_at)
    VALUES (?, ?, ?, ?, ?, ?)"""
_SET_VALUE = "INSERT OR REPLACE INTO named_values (name, value) VALUES (?, ?)"
_HISTORY = "SELECT address, jail, banned_at, bantime, failures, matches, origin FROM ban_history"


class SqliteStore:
    """``Store`` on a local SQLite file. Opening creates or upgrades the schema.

    Raises ``StoreError`` (never a bare sqlite3 error) if the file cannot be opened, is not a
    banish database, is corrupt, or was written by a newer banish.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_matches: int = 10,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 2.0,
    ) -> None:
        self.path = os.fspath(path)
        self.max_matches = max_matches
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        with self._errors("cannot open the ban database"):
            self._create_private()
            conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)  # serialized by self._lock
            self._conn = conn
            try:
                self._open(conn, synchronous)
            except BaseException:
                self._conn = None
                conn.close()
                raise

    # -- opening -------------------------------------------------------------------------

    def _create_private(self) -> None:
        """Create a missing file as 0600: history holds matched log lines (user names...).
        SQLite gives the -wal and -shm files the same permissions."""
        if self.path == ":memory:" or os.path.exists(self.path):
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise StoreError(self.path, f"cannot create the ban database: {exc.strerror}") from exc
        os.close(fd)

    def _open(self, conn: sqlite3.Connection, synchronous: str) -> None:
        # Look before writing anything: a foreign or newer file must be left untouched.
        fresh = self._check_ownership(conn)
        if fresh:
            # Only takes effect before the first table exists; lets compact() shrink the file.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and self.path != ":memory:":
            raise StoreError(self.path, f"cannot use WAL journaling here (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # 16 MB of page cache: a 100k-ban batch then rarely spills to the WAL mid-transaction.
        conn.execute("PRAGMA cache_size = -16384")
        # Keep a checkpointed WAL from staying at its high-water mark after a burst.
        conn.execute("PRAGMA journal_size_limit = 8388608")
        self._migrate(conn)

    def _check_ownership(self, conn: sqlite3.Connection) -> bool:
        """Refuse files that are not banish's; return True for an empty (new) database."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if app_id == APPLICATION_ID:
            self._check_version(version)
            return False
        if app_id == 0 and not tables:
            return True
        hint = " (it looks like fail2ban's database)" if "fail2banDb" in tables else ""
        raise StoreError(self.path, f"not a banish ban database{hint}; point banish elsewhere")

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise StoreError(
                self.path,
                f"written by a newer banish (schema {version}; this banish knows up to "
                f"{len(MIGRATIONS)}): upgrade banish, or move the file away to start afresh",
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Run the pending steps in one transaction: a failed upgrade leaves the old schema."""
        if conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return
        with self._transaction(conn):
            # Re-read under the write lock: another process may have upgraded meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            for step in MIGRATIONS[version:]:
                step(conn)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Every use of the connection runs inside this: one call at a time, any thread."""
        with self._lock:
            try:
                yield
            except (sqlite3.Error, UnicodeEncodeError) as exc:
                raise StoreError(self.path, f"{doing}: {exc}") from exc

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so a read-then-write cannot be overtaken.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._errors(doing):
            conn = self._connection()
            with self._transaction(conn):
                yield conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(self.path, "the ban database is closed")
        return self._conn

    def _read(self, doing: str, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._errors(doing):
            return self._connection().execute(sql, args).fetchall()

    def _encode_matches(self, matches: tuple[str, ...]) -> str | None:
        """Newline-joined: ten times cheaper than JSON, which matters at 100k bans a batch.

        The stored lines are for people to read, and already cut to a count and a length, so
        a newline inside a line (rare: a journal message) is stored as a space.
        """
        if not matches or self.max_matches <= 0:
            return None
        kept = matches[-self.max_matches :]
        text = "\n".join(kept)
        if text.count("\n") != len(kept) - 1 or (
            len(text) > MAX_MATCH_CHARS and max(map(len, kept)) > MAX_MATCH_CHARS
        ):
            text = "\n".join(line[:MAX_MATCH_CHARS].replace("\n", " ") for line in kept)
        if not text.isascii():
            # A line read with errors="surrogateescape" holds lone surrogates, which UTF-8
            # cannot store: keep them visible as \udcxx instead of failing the whole batch.
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if "\0" in text:  # SQLite's JSON functions end text at a NUL: show it as \x00
            text = text.replace("\0", "\\x00")
        return text

    # -- bans ----------------------------------------------------------------------------

    def add_bans(self, bans: Sequence[Ban], outbox: Sequence[OutboxEvent] = ()) -> None:
        if not bans:
            return
        encode = self._encode_matches
        shared = bans[0][1:7]  # what history keeps, but the address
        try:
            if all(b[1:7] == shared for b in bans):
                jail, banned_at, bantime, failures, matches, origin = shared
                sql = _ADD_HISTORY_SHARED
                args: list[object] = [jail, banned_at, bantime, failures, encode(matches), origin,
                                      json.dumps([b.address for b in bans], ensure_ascii=False)]
            else:
                sql = _ADD_HISTORY
                args = [json.dumps(
                    [(b.address, b.jail, b.banned_at, b.bantime, b.failures, encode(b.matches),
                      b.origin) for b in bans], ensure_ascii=False, allow_nan=False,
                    separators=(",", ":"))]
        except (TypeError, ValueError) as exc:  # a caller's bug; nothing was written
            raise StoreError(self.path, f"cannot record bans: {exc}") from exc
        with self._write("cannot record bans") as conn:
            # Under the write lock nobody else inserts, so the batch gets the ids after this.
            first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM ban_history").fetchone()[0]
            conn.execute(sql, args)
            conn.execute(_ADD_ACTIVE, [first])
            if outbox:
                self._outbox_insert(conn, outbox)

    def remove_bans(self, keys: Iterable[BanKey], *, forget: bool = False) -> int:
        pairs = [(k.address, k.jail) for k in keys]
        if not pairs:
            return 0
        with self._write("cannot remove bans") as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM active_bans WHERE address = ? AND jail = ?", pairs)
            removed = conn.total_changes - before
            if forget:
                conn.executemany("DELETE FROM ban_history WHERE address = ? AND jail = ?", pairs)
        return removed

    @staticmethod
    def _active(rows: Iterable[Any]) -> list[Ban]:
        return [Ban(address, jail, banned_at, bantime, origin=origin)
                for address, jail, banned_at, bantime, origin in rows]

    def active_bans(self, now: float, jail: str | None = None) -> list[Ban]:
        return self._active(self._read("cannot read active bans", _ACTIVE, [now, jail]))

    def expired_bans(self, now: float) -> list[Ban]:
        return self._active(self._read("cannot read expired bans", _EXPIRED, [now]))

    def release_expired(self, now: float) -> list[Ban]:
        with self._write("cannot release expired bans") as conn:
            rows = conn.execute(_EXPIRED, [now]).fetchall()
            # Same condition under the same write lock, so exactly the listed rows go.
            conn.execute("DELETE FROM active_bans WHERE expires_at <= ?", [now])
        return self._active(rows)

    def ban_history(
        self, address: str | None = None, jail: str | None = None, since: float | None = None
    ) -> list[Ban]:
        where: list[str] = []
        args: list[object] = []
        for column, op, value in (
            ("address", "=", address),
            ("jail", "=", jail),
            ("banned_at", ">=", since),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        # Only constant fragments are joined; every value is a bound parameter.
        sql = _HISTORY + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read("cannot read ban history", sql + " ORDER BY banned_at, id", args)
        return [
            Ban(
                address,
                jail_,
                banned_at,
                bantime,
                failures,
                tuple(matches.split("\n")) if matches is not None else (),
                origin,
            )
            for address, jail_, banned_at, bantime, failures, matches, origin in rows
        ]

    def ban_count(self, address: str, jail: str | None, since: float) -> BanCount:
        sql = "SELECT banned_at, bantime FROM ban_history WHERE address = ? AND banned_at >= ?"
        args: list[object] = [address, since]
        if jail is not None:
            sql += " AND jail = ?"
            args.append(jail)
        rows = self._read("cannot count bans", sql + " ORDER BY banned_at, id", args)
        if not rows:
            return BanCount(0)
        last_at, last_bantime = rows[-1]
        return BanCount(len(rows), last_bantime, last_at)

    # -- reading positions ---------------------------------------------------------------

    def set_position(self, position: FilePosition) -> None:
        with self._write("cannot save a file position") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO file_positions (path, inode, offset, head_hash) "
                "VALUES (?, ?, ?, ?)",
                (position.path, position.inode, position.offset, position.head_hash),
            )

    def get_position(self, path: str) -> FilePosition | None:
        rows = self._read(
            "cannot read a file position",
            "SELECT path, inode, offset, head_hash FROM file_positions WHERE path = ?",
            [path],
        )
        return FilePosition(*rows[0]) if rows else None

    def set_cursor(self, jail: str, cursor: str) -> None:
        with self._write("cannot save a journal cursor") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO journal_cursors (jail, cursor) VALUES (?, ?)",
                (jail, cursor),
            )

    def get_cursor(self, jail: str) -> str | None:
        rows = self._read(
            "cannot read a journal cursor",
            "SELECT cursor FROM journal_cursors WHERE jail = ?",
            [jail],
        )
        return str(rows[0][0]) if rows else None

    # -- the fleet's outbox and named values ---------------------------------------------

    def outbox_add(self, events: Sequence[OutboxEvent],
                   values: Mapping[str, str] | None = None) -> None:
        """Append events (their ``seq`` is given here, in order) and set named ``values`` in
        the same transaction, committed on return."""
        if not events and not values:
            return
        with self._write("cannot queue fleet events") as conn:
            self._outbox_insert(conn, events)
            conn.executemany(_SET_VALUE, list((values or {}).items()))

    @staticmethod
    def _outbox_insert(conn: sqlite3.Connection, events: Sequence[OutboxEvent]) -> None:
        conn.executemany(_OUTBOX_ADD, [(e.kind, e.jail, ",".join(e.addresses),
                                        len(e.addresses), e.bantime, e.banned_at)
                                       for e in events])

    def outbox_peek(self, limit: int) -> list[OutboxEvent]:
        """The oldest waiting decisions, in order: as many as hold ``limit`` addresses (at
        least one)."""
        rows = self._read("cannot read the fleet outbox",
                          "SELECT seq, kind, jail, addresses, count, bantime, banned_at "
                          "FROM fleet_outbox ORDER BY seq LIMIT ?", [limit])
        out: list[OutboxEvent] = []
        total = 0
        for seq, kind, jail, addresses, count, bantime, banned_at in rows:
            if out and total + count > limit:
                break
            total += count
            out.append(OutboxEvent(seq, kind, jail, tuple(addresses.split(",")), bantime,
                                   banned_at))
        return out

    def outbox_drop(self, upto: int) -> None:
        """Forget the events up to ``seq`` ``upto``: the database holds them."""
        with self._write("cannot update the fleet outbox") as conn:
            conn.execute("DELETE FROM fleet_outbox WHERE seq <= ?", [upto])

    def outbox_size(self) -> int:
        """Addresses waiting (in all decisions)."""
        return int(self._read("cannot read the fleet outbox",
                              "SELECT coalesce(sum(count), 0) FROM fleet_outbox")[0][0])

    def set_value(self, name: str, value: str) -> None:
        with self._write(f"cannot save {name}") as conn:
            conn.execute(_SET_VALUE, [name, value])

    def get_value(self, name: str) -> str | None:
        rows = self._read(f"cannot read {name}",
                          "SELECT value FROM named_values WHERE name = ?", [name])
        return str(rows[0][0]) if rows else None

    # -- upkeep --------------------------------------------------------------------------

    def purge(self, older_than: float, limit: int | None = None) -> int:
        with self._write("cannot purge old bans") as conn:
            cursor = conn.execute(
                """DELETE FROM ban_history WHERE id IN (
                    SELECT id FROM ban_history h WHERE banned_at < ?1 AND NOT EXISTS (
                        SELECT 1 FROM active_bans a WHERE a.address = h.address
                        AND a.jail = h.jail AND a.banned_at = h.banned_at)
                    ORDER BY banned_at, id LIMIT ?2)""",
                [older_than, -1 if limit is None else limit],
            )
            return cursor.rowcount

    def compact(self) -> None:
        """Return free pages to the file system and shrink the WAL.

        ``incremental_vacuum`` only moves pages freed by deletes, so its cost follows what
        ``purge`` removed, not the database size; unlike VACUUM it needs no second copy.
        """
        with self._errors("cannot compact the ban database"):
            conn = self._connection()
            # executescript, not execute: sqlite3 steps a statement without result columns
            # only once, and incremental_vacuum frees one page per step.
            conn.executescript("PRAGMA incremental_vacuum;")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            conn.execute("PRAGMA optimize")

    def check(self) -> None:
        """Verify the whole file (``PRAGMA quick_check``); for ``banish`` diagnostics, not the
        hot path: it reads every page."""
        rows = self._read("cannot check the ban database", "PRAGMA quick_check")
        problems = [str(row[0]) for row in rows if row[0] != "ok"]
        if problems:
            raise StoreError(self.path, f"the ban database is corrupt: {problems[0]}")

    def close(self) -> None:
        with self._lock:  # waits for a call still running in another thread
            conn, self._conn = self._conn, None
        if conn is None:
            return
        with self._errors("cannot close the ban database"):
            try:
                conn.execute("PRAGMA optimize")
            finally:
                conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
