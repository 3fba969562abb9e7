"""The SQL of insight: where each banned address comes from, and the queries of the report.

Owns the ``address_origin``, ``ban_users`` and ``insight_rows`` tables (their schema is
``MIGRATION``, the last step of ``store.sqlite.MIGRATIONS``), writing enrichment results,
keeping ``insight_rows`` (the report's indexed copy of the history) in step, and the aggregate
queries ``banish report`` and the dashboard read. Kept out of ``sqlite.py`` so the ban path's
store stays small; this module never writes ``active_bans`` or ``ban_history``.

Why a table keyed by address and not columns on ``ban_history``: where an address comes from
is a property of the address, not of one ban, so a repeat offender is looked up and written
once; old history is enriched later by filling the addresses it lacks (``missing``), with no
rewrite of history rows; and the ban path's big INSERT stays as fast as it was.

Must not read the clock (times are passed in) or know about GeoIP databases.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

# Appended to store.sqlite.MIGRATIONS: never edit once released.
# Compact text: SQLite keeps each CREATE statement verbatim in the schema, and the whole schema
# must fit its first page (tests/unit/test_store_sqlite.py reads only page 1 at open).
_SCHEMA = (
    "CREATE TABLE address_origin (address TEXT PRIMARY KEY, country TEXT NOT NULL, "
    "asn INTEGER, as_org TEXT NOT NULL, scope TEXT NOT NULL, hostname TEXT, "
    "source TEXT NOT NULL, looked_up_at REAL NOT NULL) WITHOUT ROWID",
    # The user name a ban's triggering failure captured (<F-USER>), when it had one. Read
    # by whole scans (the report covers most of it), so no index.
    "CREATE TABLE ban_users (address TEXT NOT NULL, jail TEXT NOT NULL, "
    "banned_at REAL NOT NULL, user TEXT NOT NULL)",
    # The report's copy of the history (no matched lines), kept in step by ``sync`` off the
    # ban path. Its two covering indexes make the report's passes in-order index scans with
    # no sort; on ban_history itself they would cost the ban path (measured: the 100,000-ban
    # bulk 2.75 s -> 3.73 s), so they live here instead.
    "CREATE TABLE insight_rows (id INTEGER PRIMARY KEY, address TEXT NOT NULL, "
    "jail TEXT NOT NULL, origin TEXT NOT NULL, banned_at REAL NOT NULL, "
    "bantime INTEGER NOT NULL, failures INTEGER NOT NULL)",
    "CREATE INDEX insight_rows_who ON insight_rows "
    "(address, banned_at, bantime, failures, jail, origin)",
    "CREATE INDEX insight_rows_when ON insight_rows "
    "(CAST(banned_at / 900 AS INTEGER), jail, origin, failures, banned_at)",
)
FILLED = "insight.filled_upto"
"""``named_values`` entry: every insight_rows row up to this id has its address's origin."""


def MIGRATION(conn: sqlite3.Connection) -> None:
    """Schema step adding the insight tables (see module docstring)."""
    for statement in _SCHEMA:
        conn.execute(statement)


class Origin(NamedTuple):
    """Where an address comes from. ``scope``: global, private, reserved or unknown (global
    but absent from the database); ``country`` is an ISO 3166 code or ""; ``asn`` None when
    the database does not say (the shipped data names the AS organisation only)."""

    address: str
    country: str
    asn: int | None
    as_org: str
    scope: str
    source: str
    hostname: str | None = None


_UPSERT = """INSERT INTO address_origin
    (address, country, asn, as_org, scope, hostname, source, looked_up_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (address) DO UPDATE SET country = excluded.country, asn = excluded.asn,
        as_org = excluded.as_org, scope = excluded.scope, source = excluded.source,
        looked_up_at = excluded.looked_up_at,
        hostname = coalesce(excluded.hostname, address_origin.hostname)"""


def connect(path: str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A second connection to the ban database (the store has migrated it already).

    Enrichment and reports use their own connection so that they never hold the store's lock
    the ban path waits on; WAL lets them read while the daemon writes, and a write of theirs
    waits at most ``timeout`` for the daemon's.
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def save_origins(conn: sqlite3.Connection, origins: Sequence[Origin], now: float) -> None:
    if not origins:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_UPSERT, [(o.address, o.country, o.asn, o.as_org, o.scope, o.hostname,
                                    o.source, now) for o in origins])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def save_hostname(conn: sqlite3.Connection, address: str, hostname: str) -> None:
    conn.execute("UPDATE address_origin SET hostname = ? WHERE address = ?", [hostname, address])


def save_users(conn: sqlite3.Connection, rows: Iterable[tuple[str, str, float, str]]) -> None:
    """``(address, jail, banned_at, user)`` rows, one per ban that named a user."""
    batch = list(rows)
    if batch:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO ban_users (address, jail, banned_at, user) "
                         "VALUES (?, ?, ?, ?)", batch)
        conn.execute("COMMIT")


def origins(conn: sqlite3.Connection, addresses: Iterable[str]) -> dict[str, Origin]:
    out: dict[str, Origin] = {}
    batch = list(addresses)
    for i in range(0, len(batch), 500):
        part = batch[i:i + 500]
        marks = ",".join("?" * len(part))  # only "?" marks are joined into the text
        sql = ("SELECT address, country, asn, as_org, scope, source, hostname "  # noqa: S608
               f"FROM address_origin WHERE address IN ({marks})")
        for row in conn.execute(sql, part):
            out[row[0]] = Origin(*row)
    return out


def missing(conn: sqlite3.Connection) -> tuple[list[str], int]:
    """Addresses of history rows copied since the last fill that have no origin yet (old
    history, imports, bans made with enrichment off), and the id to record with
    ``filled`` once they have one: a warm report checks only the new rows."""
    upto = conn.execute("SELECT value FROM named_values WHERE name = ?", [FILLED]).fetchone()
    start = int(upto[0]) if upto else 0
    top = int(conn.execute("SELECT coalesce(max(id), 0) FROM insight_rows").fetchone()[0])
    rows = conn.execute(
        """SELECT DISTINCT h.address FROM insight_rows h WHERE h.id > ?
             AND NOT EXISTS (SELECT 1 FROM address_origin o WHERE o.address = h.address)""",
        [start]).fetchall()
    return [r[0] for r in rows], top


def filled(conn: sqlite3.Connection, upto: int) -> None:
    conn.execute("INSERT OR REPLACE INTO named_values (name, value) VALUES (?, ?)",
                 [FILLED, str(upto)])


def prune(conn: sqlite3.Connection) -> int:
    """Forget origins and users of addresses the history no longer holds (after a purge)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        gone = conn.execute("""DELETE FROM address_origin WHERE NOT EXISTS (
            SELECT 1 FROM ban_history h WHERE h.address = address_origin.address)""").rowcount
        conn.execute("""DELETE FROM ban_users WHERE banned_at <
            coalesce((SELECT min(banned_at) FROM ban_history), 1e300)""")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return int(gone)


SYNC_SLICE = 5000
"""History rows copied per transaction: the write lock is held for milliseconds, so a ban
committed meanwhile waits at most that long."""


def sync(conn: sqlite3.Connection, *, limit: int | None = None) -> int:
    """Bring ``insight_rows`` in step with ``ban_history``: copy the rows added since (in
    slices of SYNC_SLICE, at most ``limit`` rows), and, when rows were deleted from the
    history (purge, ``unban --forget``), forget them too. Returns the rows copied.

    History ids only grow (SQLite gives a new row the largest id + 1, and a purge removes the
    oldest), so "added since" is "id above the copy's largest"; deletions show as a count
    that no longer matches."""
    copied = 0
    while limit is None or copied < limit:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(
                """INSERT INTO insight_rows (id, address, jail, origin, banned_at, bantime,
                                             failures)
                   SELECT id, address, jail, origin, banned_at, bantime, failures
                   FROM ban_history WHERE id > (SELECT coalesce(max(id), 0) FROM insight_rows)
                   ORDER BY id LIMIT ?""", [SYNC_SLICE]).rowcount
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        copied += n
        if n < SYNC_SLICE:
            break
    if limit is None:
        history = conn.execute("SELECT count(*) FROM ban_history").fetchone()[0]
        if conn.execute("SELECT count(*) FROM insight_rows").fetchone()[0] != history:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("""DELETE FROM insight_rows WHERE NOT EXISTS (
                SELECT 1 FROM ban_history h WHERE h.id = insight_rows.id)""")
            conn.execute("COMMIT")
    return copied


# -- the report's queries ---------------------------------------------------------------------

class Scope(NamedTuple):
    """Which history rows a report covers: [since, until), optionally some jails and nodes.
    ``local`` is the node name shown for this host's own bans (origin "")."""

    since: float
    until: float
    jails: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    local: str = "local"

    def where(self, alias: str = "h", *, scan: bool = False,
              bucket: bool = False) -> tuple[str, list[object]]:
        """A WHERE clause of constant fragments; every value is a bound parameter.
        ``scan``: read the whole table rather than through the ``banned_at`` index (the
        unary ``+`` hides the column from the planner): for a period covering most of the
        history, one sequential read beats a million index-then-row look-ups."""
        col = f"+{alias}.banned_at" if scan else f"{alias}.banned_at"
        clause = f"{col} >= ? AND {col} < ?"
        args: list[object] = [self.since, self.until]
        if bucket:  # the same bounds in the terms of insight_rows_when, so it can seek
            clause += (f" AND CAST({alias}.banned_at / {BUCKET} AS INTEGER) BETWEEN"
                       " CAST(? AS INTEGER) AND CAST(? AS INTEGER)")
            args += [max(self.since, -1e15) // BUCKET, min(self.until, 1e15) // BUCKET]
        if self.jails:
            clause += f" AND {alias}.jail IN ({','.join('?' * len(self.jails))})"
            args += list(self.jails)
        if self.nodes:
            origins = ["" if n == self.local else n for n in self.nodes]
            clause += f" AND {alias}.origin IN ({','.join('?' * len(origins))})"
            args += origins
        return clause, args


BUCKET = 900  # written out in insight_rows_when's expression: change both or neither
"""Seconds per time bucket of the first pass: 15 minutes, so hours of the day come out right
in every time zone (there are zones at :30 and :45)."""


def buckets(conn: sqlite3.Connection, scope: Scope) -> list[tuple[int, str, str, int, int,
                                                                  float, float]]:
    """One pass over the history: ``(bucket start, jail, origin, bans, failures, first,
    last)``. Totals, per jail, per node, per hour and per day all come from these few thousand
    rows instead of one scan of the history each."""
    where, args = scope.where(bucket=True)
    sql = f"""SELECT CAST(h.banned_at / {BUCKET} AS INTEGER), h.jail, h.origin,
                     count(*), sum(h.failures), min(h.banned_at), max(h.banned_at)
              FROM insight_rows h INDEXED BY insight_rows_when WHERE {where}
              GROUP BY CAST(h.banned_at / {BUCKET} AS INTEGER), h.jail, h.origin
              """  # noqa: S608
    return [(b * BUCKET, *rest) for b, *rest in conn.execute(sql, args)]


class Addresses(NamedTuple):
    """The address pass, summed up in SQL (170,000 addresses never become Python objects):
    offender rows are ``(address, bans, failures, first, last, repeat, country, asn, as_org,
    scope)``."""

    addresses: int
    repeaters: int
    scopes: dict[str, int]
    countries: list[tuple[str, str, int, int, int]]
    """(country, scope where the country is unknown, bans, failures, addresses)"""
    systems: list[tuple[int | None, str, int, int, int]]
    """(asn, as_org, bans, failures, addresses), the ``top`` biggest"""
    top: list[tuple[Any, ...]]
    repeat: list[tuple[Any, ...]]


def by_address(conn: sqlite3.Connection, scope: Scope, top: int) -> Addresses:
    """Per address: bans, failures, first, last, whether it was banned again after a ban of
    it had ended (a repeat offender), and its origin -- summed by country and AS, with the
    top offenders and repeat offenders, in a temporary table of this connection.

    "Banned again after release" needs no ordering: some ban started at or after the end of
    another exactly when the latest start is at or after the earliest end (a ban ends after it
    starts, so the two are different bans, and the ended one started first)."""
    where, args = scope.where()
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("DROP TABLE IF EXISTS temp.insight_agg")
    conn.execute(f"""CREATE TEMP TABLE insight_agg AS
        SELECT s.*, coalesce(o.country, '') AS country, o.asn AS asn,
               coalesce(o.as_org, '') AS as_org, coalesce(o.scope, '') AS scope
        FROM (SELECT h.address AS address, count(*) AS bans, sum(h.failures) AS failures,
                     min(h.banned_at) AS first, max(h.banned_at) AS last,
                     max(h.banned_at) >= min(CASE WHEN h.bantime < 0 THEN 1e300
                                             ELSE h.banned_at + h.bantime END) AS rep
              FROM insight_rows h INDEXED BY insight_rows_who WHERE {where}
              GROUP BY h.address) s
        LEFT JOIN address_origin o ON o.address = s.address""", args)  # noqa: S608
    try:
        q = conn.execute
        count, repeaters = q("SELECT count(*), coalesce(sum(rep), 0) FROM insight_agg"
                             ).fetchone()
        columns = "address, bans, failures, first, last, rep, country, asn, as_org, scope"
        return Addresses(
            int(count), int(repeaters),
            dict(q("SELECT scope, count(*) FROM insight_agg GROUP BY scope").fetchall()),
            q("""SELECT country, CASE WHEN country = '' THEN scope ELSE '' END, sum(bans),
                        sum(failures), count(*) FROM insight_agg GROUP BY 1, 2""").fetchall(),
            q("""SELECT asn, as_org, sum(bans), sum(failures), count(*) FROM insight_agg
                 WHERE asn IS NOT NULL OR as_org != '' GROUP BY asn, as_org
                 ORDER BY 3 DESC, 1, 2 LIMIT ?""", [top]).fetchall(),
            q(f"SELECT {columns} FROM insight_agg ORDER BY bans DESC, "  # noqa: S608
              "failures DESC, address LIMIT ?", [top]).fetchall(),
            q(f"SELECT {columns} FROM insight_agg WHERE rep ORDER BY bans DESC, "  # noqa: S608
              "failures DESC, address LIMIT ?", [top]).fetchall())
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.insight_agg")


def users(conn: sqlite3.Connection, scope: Scope, limit: int) -> list[tuple[str, int]]:
    where, args = scope.where("u", scan=True)
    if scope.nodes:  # ban_users has no origin: join the history rows for it
        sql = f"""SELECT u.user, count(*) FROM ban_users u JOIN ban_history h
                  ON h.address = u.address AND h.jail = u.jail AND h.banned_at = u.banned_at
                  WHERE {where.replace('u.origin', 'h.origin')}
                  GROUP BY u.user ORDER BY 2 DESC, 1 LIMIT ?"""  # noqa: S608
    else:
        sql = f"""SELECT u.user, count(*) FROM ban_users u WHERE {where}
                  GROUP BY u.user ORDER BY 2 DESC, 1 LIMIT ?"""  # noqa: S608
    return conn.execute(sql, [*args, limit]).fetchall()


def address_history(conn: sqlite3.Connection, address: str, limit: int = 500
                    ) -> list[tuple[str, float, int, int, str, str]]:
    """One address's bans, newest first: jail, banned_at, bantime, failures, origin node,
    matched lines."""
    return conn.execute(
        """SELECT jail, banned_at, bantime, failures, origin, coalesce(matches, '')
           FROM ban_history WHERE address = ? ORDER BY banned_at DESC, id DESC LIMIT ?""",
        [address, limit]).fetchall()


def active_page(conn: sqlite3.Connection, now: float, offset: int, limit: int,
                jail: str | None = None) -> tuple[int, list[tuple[str, str, float, int, str]]]:
    """A page of active bans and how many there are: the dashboard's table. Permanent bans
    come first, then the others by end, latest first (for equal bantimes: newest first).

    Ordered by ``expires_at`` because ``active_bans_expires_at`` indexes it: counting and
    paging walk the index (a page deep into 100,000 bans costs ~40 ms), where ordering by
    start would sort every active ban for each page (~400 ms)."""
    perm = conn.execute("SELECT count(*) FROM active_bans WHERE expires_at IS NULL "
                        "AND (?1 IS NULL OR jail = ?1)", [jail]).fetchone()[0]
    timed = conn.execute("SELECT count(*) FROM active_bans WHERE expires_at > ?1 "
                         "AND (?2 IS NULL OR jail = ?2)", [now, jail]).fetchone()[0]
    rows: list[tuple[str, str, float, int, str]] = []
    if offset < perm:
        rows += conn.execute(
            """SELECT address, jail, banned_at, bantime, origin FROM active_bans
               WHERE expires_at IS NULL AND (?1 IS NULL OR jail = ?1)
               ORDER BY banned_at DESC LIMIT ?2 OFFSET ?3""", [jail, limit, offset]).fetchall()
    if len(rows) < limit:
        rows += conn.execute(
            """SELECT address, jail, banned_at, bantime, origin FROM active_bans
               WHERE expires_at > ?1 AND (?2 IS NULL OR jail = ?2)
               ORDER BY expires_at DESC LIMIT ?3 OFFSET ?4""",
            [now, jail, limit - len(rows), max(0, offset - perm)]).fetchall()
    return int(perm + timed), rows


def history_after(conn: sqlite3.Connection, after_id: int, limit: int = 1000
                  ) -> list[tuple[int, str, str, float, int, int, str]]:
    """History rows with an id above ``after_id``: how the dashboard's live view learns of
    new bans without a connection to the daemon (the table only grows between purges)."""
    return conn.execute(
        """SELECT id, address, jail, banned_at, bantime, failures, origin FROM ban_history
           WHERE id > ? ORDER BY id LIMIT ?""", [after_id, limit]).fetchall()


def last_history_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM ban_history").fetchone()[0])
