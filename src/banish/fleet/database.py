"""A node's connection to the fleet's PostgreSQL database (psycopg 3, async, pooled).

Owns every statement the fleet runs, and the rules that make sharing safe on a busy database:

- **Order.** Writers take one transaction-scoped advisory lock before inserting, so event ids
  commit in id order: a reader whose cursor passed id n can never later see a smaller id
  commit (a plain sequence would let a slow transaction commit 104 after 105 was read).
- **Exactly once.** Every decision carries a key made from the decision itself (a hash of
  node, kind, jail, start, bantime and addresses); ``ON CONFLICT (key) DO NOTHING`` makes a
  resend after a lost reply harmless.
- **One clock.** A node sends how old a ban is and how long it lasts, never its own
  timestamps: ``banned_at``/``expires_at`` are computed with the database's ``now()``, and
  rows are read back with the database's ``now()`` beside them, so receivers apply the time
  left whatever their own clocks say.
- **Batches.** One row per decision (a log's ban is one address, a 100,000-address
  blocklist one row with an array), one ``INSERT`` per batch sent.
- **Doorbell.** ``NOTIFY banish_fleet`` carries nothing a receiver needs: it only wakes
  receivers, which then read rows by cursor (no payload limit, a lost notification costs at
  most one poll interval).

Rows read from the database are returned as they are: validating them before they reach a
firewall is the daemon's job (``daemon.fleet.valid_target``). Must not touch the firewall or
the local store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from ..errors import BanishError
from .schema import MIGRATIONS

CHANNEL = "banish_fleet"
LOCK = 0x62616E69
"""The advisory lock id writers and migrations serialise on ("bani")."""
READ_LIMIT = 1000
"""Events per read (an event is one decision: one address, or a whole blocklist)."""
ENDED_KEPT = "1 day"
FAILURES_KEPT = "7 days"
CONNECT_TIMEOUT = 10


class FleetError(BanishError):
    """The fleet database cannot be used as it is (schema too new, no rights to migrate)."""


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """A decision on its way to the database: addresses banned (or unbanned) in one jail.
    ``stamp``: when the ban began on the sender's clock (it only names the decision);
    ``age``: seconds since, at sending; ``bantime`` < 0 is permanent."""

    kind: str
    jail: str
    addresses: tuple[str, ...]
    bantime: int
    stamp: float
    age: float


class FleetRow(NamedTuple):
    """A decision (or, from `snapshot`, active bans of one origin and time) as read back;
    times are the database's, ``now`` included. Every field, and every element of
    ``addresses``, is untrusted until validated."""

    id: int
    kind: str
    jail: str
    addresses: list[str]
    node: str
    banned_at: float
    expires_at: float | None
    now: float


_COLUMNS = """node, extract(epoch FROM banned_at)::float8,
    extract(epoch FROM expires_at)::float8, extract(epoch FROM now())::float8"""

# Constant text only (no value is ever formatted into SQL): parameters travel separately.
# Whole events (all their addresses) after the cursor, a bounded number of events at a time.
_READ_SINCE = f"""SELECT id, kind, jail, addresses, {_COLUMNS}
    FROM banish_events WHERE id > %s ORDER BY id LIMIT %s"""  # noqa: S608
# The fleet's active bans, derived from the events: per (jail, address), the ban events
# after its last unban that have not ended; the longest of them wins.
_SNAPSHOT = f"""WITH ev AS (
        SELECT e.id, e.kind, e.jail, a.address, e.node, e.banned_at, e.expires_at
        FROM banish_events e CROSS JOIN LATERAL unnest(e.addresses) AS a(address)
    ), lifted AS (
        SELECT jail, address, max(id) AS id FROM ev WHERE kind = 'unban' GROUP BY jail, address
    ), active AS (
        SELECT DISTINCT ON (ev.jail, ev.address) ev.jail, ev.address, ev.node, ev.banned_at,
               ev.expires_at
        FROM ev LEFT JOIN lifted u ON u.jail = ev.jail AND u.address = ev.address
        WHERE ev.kind = 'ban' AND (u.id IS NULL OR ev.id > u.id)
          AND (ev.expires_at IS NULL OR ev.expires_at > now())
        ORDER BY ev.jail, ev.address, ev.expires_at DESC NULLS FIRST
    )
    SELECT 0, 'ban', jail, array_agg(address), {_COLUMNS}
    FROM active GROUP BY jail, node, banned_at, expires_at ORDER BY banned_at"""  # noqa: S608
_HEARTBEAT = """INSERT INTO banish_nodes (node, version, cursor, queued) VALUES (%s, %s, %s, %s)
    ON CONFLICT (node) DO UPDATE SET version = EXCLUDED.version, last_seen = now(),
        cursor = EXCLUDED.cursor, queued = EXCLUDED.queued"""
_HEARTBEAT_START = _HEARTBEAT + ", started_at = now()"

# One statement per batch, one row per decision; each key once, whatever was sent before.
_PUBLISH = """INSERT INTO banish_events (key, kind, jail, addresses, node, banned_at, expires_at)
    SELECT key, kind, jail, string_to_array(addresses, ','), %s,
           now() - make_interval(secs => age),
           CASE WHEN bantime < 0 THEN NULL
                ELSE now() - make_interval(secs => age) + make_interval(secs => bantime) END
    FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::bigint[])
         WITH ORDINALITY AS t(key, kind, jail, addresses, age, bantime, n)
    ORDER BY n
    ON CONFLICT (key) DO NOTHING"""


def group(node: str, events: Sequence[FleetEvent]
          ) -> list[tuple[uuid.UUID, str, str, list[str], float, int]]:
    """Events as decisions: the addresses of one kind, jail, start and bantime together, in
    the order they first appear. The key is made from the decision itself (16 bytes), so a
    resend -- after a lost reply, or of events a crash queued twice -- is dropped."""
    decisions: dict[tuple[str, str, float, int], tuple[list[str], float]] = {}
    for e in events:
        found = decisions.get((e.kind, e.jail, e.stamp, e.bantime))
        if found is None:
            decisions[(e.kind, e.jail, e.stamp, e.bantime)] = (list(e.addresses), e.age)
        else:
            found[0].extend(e.addresses)
    out = []
    for (kind, jail, stamp, bantime), (addresses, age) in decisions.items():
        unique = sorted(set(addresses))
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{node}\0{kind}\0{jail}\0{stamp!r}\0{bantime}\0".encode())
        digest.update(",".join(unique).encode())
        out.append((uuid.UUID(bytes=digest.digest()), kind, jail, unique, age, bantime))
    return out


class FleetDatabase:
    """One node's pool of connections, plus the connection that listens for the doorbell."""

    def __init__(self, pool: AsyncConnectionPool[Any], conninfo: str, node: str,
                 version: str) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self.node = node
        self.version = version
        self._listener: psycopg.AsyncConnection[Any] | None = None

    @classmethod
    async def open(cls, database: str, node: str, *, version: str,
                   passfile: str | None = None) -> FleetDatabase:
        """Connect (raising when the database cannot be reached within a few seconds),
        bring the schema up to date, and register this node."""
        conninfo = _conninfo(database, passfile, CONNECT_TIMEOUT,
                             application_name=f"banish {node}"[:63])
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo, min_size=1, max_size=4, open=False, timeout=CONNECT_TIMEOUT,
            kwargs={"autocommit": True}, check=AsyncConnectionPool.check_connection,
            name=f"banish-fleet-{node}")
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            db = cls(pool, conninfo, node, version)
            await db._migrate()
            await db.heartbeat(0, 0, starting=True)
        except BaseException:
            await pool.close()
            raise
        return db

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        await self._pool.close()

    async def _migrate(self) -> None:
        async with self._pool.connection() as conn:
            version = await self._schema_version(conn)
            if version > len(MIGRATIONS):
                raise FleetError(f"the fleet database has schema version {version}, newer "
                                 f"than this banish knows ({len(MIGRATIONS)}): upgrade banish")
            if version == len(MIGRATIONS):
                return
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
                    version = await self._schema_version(conn)
                    for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
                        for step in steps:
                            await conn.execute(step)
                        await conn.execute(
                            "INSERT INTO banish_meta (name, value) VALUES ('schema', %s) "
                            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                            [number])
            except psycopg.errors.InsufficientPrivilege as exc:
                raise FleetError(
                    f"the fleet schema is at version {version} and banish needs "
                    f"{len(MIGRATIONS)}, but this role may not create tables ({exc}): have the "
                    "database owner run 'banish fleet-schema --grant ROLE | psql'") from None

    @staticmethod
    async def _schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
        found = await (await conn.execute(
            "SELECT to_regclass('banish_meta') IS NOT NULL")).fetchone()
        if not found or not found[0]:
            return 0
        row = await (await conn.execute(
            "SELECT value FROM banish_meta WHERE name = 'schema'")).fetchone()
        return int(row[0]) if row else 0

    # -- out ----------------------------------------------------------------------------

    async def publish(self, events: Sequence[FleetEvent]) -> int:
        """Write ``events`` (in order, each decision once whatever was sent before) and ring
        the doorbell; one transaction. Returns how many decisions were new."""
        decisions = group(self.node, events)
        if not decisions:
            return 0
        columns = [[d[0] for d in decisions], [d[1] for d in decisions],
                   [d[2] for d in decisions], [",".join(d[3]) for d in decisions],
                   [d[4] for d in decisions], [d[5] for d in decisions]]
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
            cur = await conn.execute(_PUBLISH, [self.node, *columns])
            written = int(cur.rowcount)
            if written:
                await conn.execute("SELECT pg_notify(%s, '')", [CHANNEL])
        return written

    async def add_failures(self, failures: Iterable[tuple[str, str, float]]) -> None:
        """Failures as (jail, address, seconds ago): one statement for the batch."""
        rows = list(failures)
        if not rows:
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                """INSERT INTO banish_failures (jail, address, node, failed_at)
                   SELECT jail, address, %s, now() - make_interval(secs => age)
                   FROM unnest(%s::text[], %s::text[], %s::float8[]) AS t(jail, address, age)""",
                [self.node, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]])

    async def count_failures(self, jail: str, addresses: Sequence[str], findtime: float
                             ) -> dict[str, int]:
        """The fleet's failures per address in ``jail`` within the last ``findtime`` s."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT address, count(*) FROM banish_failures
                   WHERE jail = %s AND address = ANY(%s::text[])
                     AND failed_at > now() - make_interval(secs => %s)
                   GROUP BY address""", [jail, list(addresses), float(findtime)])
            return {str(a): int(n) for a, n in await cur.fetchall()}

    # -- in -----------------------------------------------------------------------------

    async def read_since(self, cursor: int, limit: int = READ_LIMIT) -> list[FleetRow] | None:
        """The events after ``cursor``, in id order (at most ``limit``); None when the cursor is past every event (a new database: the
        caller catches up from `snapshot`)."""
        async with self._pool.connection() as conn:
            newest = await (await conn.execute(
                "SELECT coalesce(max(id), 0) FROM banish_events")).fetchone()
            if newest is not None and cursor > int(newest[0]):
                return None
            cur = await conn.execute(_READ_SINCE, [cursor, limit])
            return [FleetRow(*row) for row in await cur.fetchall()]

    async def snapshot(self) -> tuple[int, list[FleetRow]]:
        """The newest event id and every fleet ban still active, as of one moment."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            last = await (await conn.execute(
                "SELECT coalesce(max(id), 0) FROM banish_events")).fetchone()
            cur = await conn.execute(_SNAPSHOT)
            rows = [FleetRow(*row) for row in await cur.fetchall()]
        return (int(last[0]) if last else 0), rows

    async def wait_doorbell(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a doorbell; True when one rang. The listening
        connection is made on first use and again after it broke."""
        if self._listener is None or self._listener.closed:
            self._listener = await psycopg.AsyncConnection.connect(self._conninfo,
                                                                   autocommit=True)
            await self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            return True  # read once more: something may have come before LISTEN
        try:
            async for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
            raise
        return False

    # -- nodes --------------------------------------------------------------------------

    async def heartbeat(self, cursor: int, queued: int, *, starting: bool = False) -> None:
        """Say this node is alive (with its version, cursor and backlog); purge history past
        its keeping time."""
        async with self._pool.connection() as conn:
            await conn.execute(_HEARTBEAT_START if starting else _HEARTBEAT,
                               [self.node, self.version, cursor, queued])
            if not starting:
                await self._purge(conn)

    async def _purge(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Bans a day past their end, and failures past any findtime, leave the database."""
        await conn.execute("DELETE FROM banish_failures WHERE failed_at < now() - %s::interval",
                           [FAILURES_KEPT])
        await conn.execute("DELETE FROM banish_events WHERE kind = 'ban' "
                           "AND expires_at < now() - %s::interval", [ENDED_KEPT])

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node: version, seconds since its last heartbeat, events it has yet to read,
        events waiting in its outbox."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT node, version, extract(epoch FROM now() - last_seen)::float8,
                          greatest((SELECT coalesce(max(id), 0) FROM banish_events) - cursor, 0),
                          queued
                   FROM banish_nodes ORDER BY node""")
            return [{"node": n, "version": v, "last_seen_ago": round(ago, 1),
                     "lag_events": int(lag), "queued": int(queued)}
                    for n, v, ago, lag, queued in await cur.fetchall()]


def _conninfo(database: str, passfile: str | None, timeout: int, **extra: Any) -> str:
    """The admin's connection string plus the password file and a connect timeout (unless
    the string gives its own)."""
    if passfile:
        extra["passfile"] = passfile
    if "connect_timeout" not in database:
        extra["connect_timeout"] = timeout
    return make_conninfo(database, **extra)


async def ping(database: str, passfile: str | None = None, timeout: float = 5.0) -> str:
    """Connect once, without the pool's retries, and return the server's version: a
    connection string's TLS settings are checked at once (tests/fleet/test_fleet_tls.py)."""
    conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(
        _conninfo(database, passfile, max(1, int(timeout)))), timeout)
    try:
        row = await (await conn.execute("SHOW server_version")).fetchone()
        return str(row[0]) if row else "?"
    finally:
        await conn.close()
