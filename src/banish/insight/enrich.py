"""Enrichment: each banned address's country, ASN and AS organisation (and optionally its
reverse DNS name) into the ban database, as a subscriber of the ban event stream.

Owns the subscriber (``Enricher``), its address cache and the reverse DNS lookups. Why a
subscriber: the enforcer publishes a ban only after the firewall and the store hold it, and a
subscriber has its own queue and task, so a slow lookup, a slow disk or a broken database here
can never delay a ban (see ``daemon/stream.py``). A 100,000-address bulk ban is looked up in
slices with a yield to the event loop between them, so the daemon stays responsive; writes go
through a connection of our own in a worker thread (SQLite releases the GIL).

The GeoIP data is opened on the first event (in a thread: the shipped file takes ~0.4 s) and
a missing or broken one is logged once (``geo.Geo.open``); its fields then stay empty.
Reverse DNS (``reversedns = true``) is asynchronous, cached, limited in concurrency and
backlog, with a short timeout: a name that does not come in time is simply not recorded.

Must not decide, apply or lift bans, or block the event loop on I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable

from ..events import Ban, BanEvent, EventKind
from ..store import insight as db
from ..store.insight import Origin
from .geo import Geo

log = logging.getLogger("banish.server")

SLICE = 500
"""Addresses looked up between two yields to the event loop (~5 ms of work)."""
CACHE = 65536
"""Addresses remembered as already written (a repeat offender costs a dict hit)."""
DNS_TIMEOUT = 2.0
DNS_CONCURRENCY = 8
DNS_BACKLOG = 1000
"""Reverse lookups waiting at most; a bulk ban of 100,000 addresses is not resolved."""
PRUNE_EVERY = 3600.0
QUIET = 0.3
"""Seconds without a new ban before the pending ones are enriched."""
MAX_WAIT = 5.0
"""...but never later than this after the first of them (a steady flood)."""
SYNC_ALL = 1 << 62
"""``sync``'s limit meaning "every new row, without the deletion check"."""


def origin_of(geo: Geo, address: str) -> Origin:
    place = geo.lookup(address)
    return Origin(address, place.country, place.asn, place.as_org, place.scope, geo.name)


class Enricher:
    """The ``enrich`` subscriber; ``subscribe`` it to the daemon's event stream."""

    def __init__(self, dbfile: str, geoipdb: str, *, reversedns: bool = False,
                 clock: Callable[[], float]) -> None:
        self.dbfile = dbfile
        self.geoipdb = geoipdb
        self.reversedns = reversedns
        self.clock = clock
        self.geo: Geo | None = None
        self._conn: sqlite3.Connection | None = None
        self._known: dict[str, None] = {}
        self._names: dict[str, str] = {}
        self._dns_pending: set[str] = set()
        self._dns_tasks: set[asyncio.Task[None]] = set()
        self._dns_gate = asyncio.Semaphore(DNS_CONCURRENCY)
        self._pending: list[tuple[Ban, ...]] = []
        self._pending_bans = 0
        self._last_event = 0.0
        self._worker: asyncio.Task[None] | None = None
        self.errors = 0
        self._last_prune = clock()
        """Pruning waits an hour: a ban the store has not taken yet (a full disk) would
        lose its origin to a prune that runs before it."""
        self.looked_up = 0
        self.written = 0

    def subscribe(self, stream: object) -> None:
        stream.subscribe("enrich", self.handle)  # type: ignore[attr-defined]

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = db.connect(self.dbfile)
        return self._conn

    async def handle(self, event: BanEvent) -> None:
        """Only notes the bans: the work waits for a quiet moment (``_work``)."""
        if event.kind is not EventKind.BAN or not event.bans:
            return
        self._pending.append(event.bans)
        self._pending_bans += len(event.bans)
        self._last_event = time.monotonic()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="enrich")

    async def _work(self) -> None:
        """Enrich what came in once no ban came for QUIET seconds (at most MAX_WAIT after
        the first): a burst of bans -- a bulk load sent in slices, a flood -- is applied at
        full speed first, its enrichment (lookups on this loop, writes that need SQLite's
        write lock) follows. Measured: the 100,000-ban bulk took 9 % longer with the work
        done as each slice arrived."""
        began = time.monotonic()
        while self._pending:
            while True:
                now = time.monotonic()
                wait = min(QUIET - (now - self._last_event), MAX_WAIT - (now - began))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            batches, self._pending, self._pending_bans = self._pending, [], 0
            try:
                await self._enrich([b for bans in batches for b in bans])
            except asyncio.CancelledError:
                raise
            except Exception:  # the next batch tries again; nothing reaches the stream
                self.errors += 1
                log.exception("enrichment failed")
            began = time.monotonic()

    async def flush(self, timeout: float = 60.0) -> bool:
        """Wait until everything noted is enriched (tests, shutdown)."""
        if self._worker is None:
            return True
        self._last_event = 0.0  # no need to wait for quiet any more
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), timeout)
        except TimeoutError:
            return False
        return True

    async def _enrich(self, bans: list[Ban]) -> None:
        if self.geo is None:
            self.geo = await asyncio.to_thread(Geo.open, self.geoipdb)
        geo = self.geo
        fresh: list[Origin] = []
        known = self._known
        seen: set[str] = set()
        for start in range(0, len(bans), SLICE):
            for ban in bans[start:start + SLICE]:
                address = ban.address
                if address in known or address in seen:
                    continue
                seen.add(address)
                fresh.append(origin_of(geo, address))
            if start + SLICE < len(bans):
                await asyncio.sleep(0)
        self.looked_up += len(fresh)
        users = [(b.address, b.jail, b.banned_at, b.fields["user"]) for b in bans
                 if b.fields and b.fields.get("user")]
        now = self.clock()
        await asyncio.to_thread(self._write, fresh, users, now)
        for origin in fresh:
            known[origin.address] = None
        if len(known) > CACHE:  # keep the newest (deleting from the front one by one is
            self._known = dict.fromkeys(list(known)[-CACHE // 2:])  # quadratic in a dict)
        if self.reversedns:
            self._resolve([o.address for o in fresh if o.scope == "global"])

    def _write(self, fresh: list[Origin], users: list[tuple[str, str, float, str]],
               now: float) -> None:
        conn = self._connection()
        db.save_origins(conn, fresh, now)
        db.save_users(conn, users)
        # The report's copy of the history, in short slices; deletions (purge) are caught
        # up by the next report, which counts both tables (too dear for every event).
        db.sync(conn, limit=SYNC_ALL)
        self.written += len(fresh)
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            db.prune(conn)

    # -- reverse DNS ---------------------------------------------------------------------

    def _resolve(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            if "/" in address or address in self._names or address in self._dns_pending:
                continue
            if len(self._dns_pending) >= DNS_BACKLOG:
                break
            self._dns_pending.add(address)
            task = asyncio.create_task(self._reverse(address), name=f"rdns:{address}")
            self._dns_tasks.add(task)
            task.add_done_callback(self._dns_tasks.discard)

    async def _reverse(self, address: str) -> None:
        try:
            async with self._dns_gate:
                loop = asyncio.get_running_loop()
                try:
                    host, _ = await asyncio.wait_for(
                        loop.getnameinfo((address, 0), socket.NI_NAMEREQD), DNS_TIMEOUT)
                except (OSError, TimeoutError, UnicodeError):
                    host = ""
            self._names[address] = host
            if len(self._names) > CACHE:
                self._names = dict.fromkeys(list(self._names)[-CACHE // 2:], "")
            if host:
                await asyncio.to_thread(db.save_hostname, self._connection(), address, host)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed name costs a debug line, never the subscriber
            log.debug("reverse DNS of %s: %s", address, exc)
        finally:
            self._dns_pending.discard(address)

    async def close(self) -> None:
        if not await self.flush(10.0) and self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for task in list(self._dns_tasks):
            task.cancel()
        for task in list(self._dns_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def fill_missing(conn: sqlite3.Connection, geo: Geo | Callable[[], Geo], now: float, *,
                 write: bool = True) -> dict[str, Origin]:
    """Origins for history addresses that have none (banned before enrichment, imported, or
    with it off): written back when ``write`` (and the database lets us), returned either way.
    Only rows copied since the last fill are looked at (``store.insight.missing``). ``geo``
    may be a function that opens the data: called only when something is missing (opening
    the shipped data costs about half a second)."""
    db.sync(conn)
    addresses, upto = db.missing(conn)
    if addresses:
        if not isinstance(geo, Geo):
            geo = geo()
        fresh = [origin_of(geo, a) for a in addresses]
    else:
        fresh = []
    if write:
        try:
            db.save_origins(conn, fresh, now)
            db.filled(conn, upto)
        except sqlite3.Error as exc:  # read-only file, a busy daemon: the report still has them
            log.debug("cannot save origins: %s", exc)
    return {o.address: o for o in fresh}
