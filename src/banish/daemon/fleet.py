"""The fleet: this node's bans shared through PostgreSQL, the other nodes' bans applied here.

Owns the daemon's side of ``banish.fleet.database``:

* out: the enforcer asks `share` for this node's own bans of jails with ``fleet =
  share|both`` and commits them to a durable outbox in the local SQLite store in the bans'
  own transaction (nothing is lost while PostgreSQL is away, or in a crash); the stream
  subscriber queues unbans by hand; a sender task publishes the outbox in order, as
  decisions with idempotent keys, and drops what the database holds;
* in: a receiver reads new fleet events by cursor -- woken by LISTEN/NOTIFY, which is only a
  doorbell, and by a timer -- validates every row (an address or a not-too-wide network, a jail
  of this node that receives) and applies it through the same enforcer as a local ban, with
  the origin node; this node's own ignore list always wins. A node that starts without a
  cursor first applies every fleet ban still active;
* fleet-wide counting: failures of jails with ``fleetmaxretry`` go to the database in bounded
  batches; an address the fleet has seen fail that often within findtime is banned here (and,
  when the jail shares, everywhere).

Ends are absolute on the database's clock: a ban travels as its age, a received ban as its
time left. Local detection and bans never wait for the database. Must not decide bans beyond
fleetmaxretry, or touch the firewall other than through the enforcer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..addr import canonical_address
from ..config.fleet import NODE_NAME as _NODE
from ..config.fleet import FleetSettings
from ..config.loader import JailConfig
from ..events import Ban, BanEvent, BanKey, EventKind
from ..store.base import OutboxEvent
from ..store.sqlite import SqliteStore
from .enforcer import Enforcer
from .stream import EventStream

log = logging.getLogger("banish.fleet")

SUBSCRIBER = "fleet"
BY_HAND = "by hand"
"""The reason of an unban typed by an admin: it is lifted fleet-wide."""
CURSOR = "fleet_cursor"
JOINED = "fleet_joined"
"""Set once this store's own bans were shared on joining a fleet."""
BATCH = 100_000
BULK = 1000
"""Batches from this size on are logged at INFO (a blocklist arriving is worth a line)."""
POLL = 2.0
HEARTBEAT = 10.0
FAILURES_EVERY = 1.0
FAILURES_PER_ADDRESS = 10
FAILURES_MAX = 100_000
MAX_BACKOFF = 10.0
"""Seconds between retries at most (with jitter): a database back from a restart is used
again within seconds, and a hundred nodes do not knock in step."""
MIN_PREFIX = {4: 16, 6: 32}
"""The widest network a fleet ban may cover (a poisoned /0 would cut every node off)."""

Jails = Callable[[], Mapping[str, JailConfig]]
Ignored = Callable[[str, str], bool]


def decisions(kind: str, bans: Sequence[Ban]) -> list[OutboxEvent]:
    """Bans as decisions: the addresses of one jail, start and bantime together (a blocklist
    is one)."""
    grouped: dict[tuple[str, float, int], list[str]] = {}
    for b in bans:
        grouped.setdefault((b.jail, b.banned_at, b.bantime), []).append(b.address)
    return [OutboxEvent(0, kind, jail, tuple(addresses), bantime, banned_at)
            for (jail, banned_at, bantime), addresses in grouped.items()]


def valid_target(text: object) -> str | None:
    """The canonical address or network a fleet row names, or None for anything else."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    canon = canonical_address(text)
    if canon is None:
        return None
    if "/" in canon:
        net = ipaddress.ip_network(canon)
        if net.prefixlen < MIN_PREFIX[net.version]:
            return None
    return canon


class FleetSync:
    """Sender, receiver and fleet-wide counting of one node."""

    def __init__(self, settings: FleetSettings, *, store: SqliteStore, enforcer: Enforcer,
                 jails: Jails, ignored: Ignored, clock: Callable[[], float], version: str,
                 open_database: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.node = settings.node
        self.store = store
        self.enforcer = enforcer
        self._jails = jails
        self._ignored = ignored
        self._clock = clock
        self._version = version
        self._open = open_database
        self.db: Any = None
        self.error = ""
        self.sent = 0
        self.received = 0
        self.refused = 0
        self._wake = asyncio.Event()
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._failures_dropped = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._nodes: list[dict[str, object]] = []

    # -- out ----------------------------------------------------------------------------

    def subscribe(self, stream: EventStream) -> None:
        stream.subscribe(SUBSCRIBER, self.handle)

    def share(self, bans: Sequence[Ban]) -> list[OutboxEvent]:
        """The fleet's part of new bans (own bans of sharing jails) as outbox decisions; the
        enforcer queues them in the same store transaction as the bans themselves."""
        jails = self._jails()
        return decisions("ban", [b for b in bans if not b.origin
                                 and (j := jails.get(b.jail)) is not None and j.settings.shares])

    def wake(self) -> None:
        """New decisions are in the outbox: the sender goes now."""
        self._wake.set()

    async def handle(self, event: BanEvent) -> None:
        """Queue unbans by hand, which the fleet lifts everywhere (new bans are queued by the
        enforcer, which wakes the sender itself)."""
        if event.kind is EventKind.UNBAN and event.reason == BY_HAND:
            jails = self._jails()
            out = decisions("unban", [b for b in event.bans
                                      if (j := jails.get(b.jail)) is not None
                                      and j.settings.fleet != "off"])
            if out:
                await asyncio.to_thread(self.store.outbox_add, out)
                self._wake.set()

    async def _share_existing(self) -> None:
        """The first time this store meets a fleet, the own bans it holds are shared too."""
        if self.store.get_value(JOINED) is not None:
            return
        out = self.share(list(self.enforcer.active))
        if out:
            log.info("Fleet: sharing the %d own bans this node holds",
                     sum(len(e.addresses) for e in out))
        await asyncio.to_thread(self.store.outbox_add, out, {JOINED: "1"})
        self._wake.set()

    def note_failure(self, jail: str, address: str, when: float) -> None:
        """A failure of a jail with ``fleetmaxretry``: reported in the next batch (bounded per
        address and overall, so a flood cannot flood the database)."""
        key = (jail, address)
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= FAILURES_MAX:
                self._failures_dropped += 1
                return
            times = self._failures[key] = []
        if len(times) < FAILURES_PER_ADDRESS:
            times.append(when)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._share_existing(), name="fleet:join"))
        for work in (self._connect, self._sender, self._receiver, self._counting,
                     self._heartbeat):
            self._tasks.append(asyncio.create_task(work(), name=f"fleet:{work.__name__}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.db is not None:
            with contextlib.suppress(Exception):
                await self.db.close()
            self.db = None

    async def _connect(self) -> None:
        """Open the database, retrying with back-off and jitter until it answers."""
        from ..fleet.database import FleetDatabase

        opener = self._open or FleetDatabase.open
        delay = 1.0
        while self.db is None:
            try:
                self.db = await opener(self.settings.database, self.node, version=self._version,
                                       passfile=self.settings.passfile)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = await self._back_off("connecting", exc, delay)
            else:
                log.info("Fleet: connected to %s as node %s", self.settings.described,
                         self.node)
                self.error = ""
                self._wake.set()

    async def _back_off(self, doing: str, exc: BaseException, delay: float) -> float:
        """Say what failed (once per new error), wait ``delay`` with jitter; the next delay."""
        self._failed(doing, exc)
        await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
        return min(delay * 2, MAX_BACKOFF)

    def _failed(self, doing: str, exc: BaseException) -> None:
        message = f"{doing}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if message != self.error:
            log.warning("Fleet: %s (retrying; local bans go on)", message)
        self.error = message

    async def _until_connected(self) -> Any:
        while self.db is None:
            await asyncio.sleep(0.2)
        return self.db

    async def _sender(self) -> None:
        from ..fleet.database import FleetEvent  # psycopg: imported only with a fleet

        delay = 1.0
        while True:
            db = await self._until_connected()
            batch = await asyncio.to_thread(self.store.outbox_peek, BATCH)
            if not batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL)
                continue
            now = self._clock()
            events = [FleetEvent(e.kind, e.jail, e.addresses, e.bantime, e.banned_at,
                                 max(0.0, now - e.banned_at)) for e in batch]
            sending = sum(len(e.addresses) for e in batch)
            try:
                t0 = time.perf_counter()
                await db.publish(events)
                log.log(logging.INFO if sending >= BULK else logging.DEBUG,
                        "Fleet: sent %d ban(s) and unban(s) in %.3fs", sending,
                        time.perf_counter() - t0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = await self._back_off("sending", exc, delay)
                continue
            delay = 1.0
            self.error = ""
            self.sent += sending
            await asyncio.to_thread(self.store.outbox_drop, batch[-1].seq)

    # -- in -----------------------------------------------------------------------------

    async def _receiver(self) -> None:
        delay = 1.0
        while True:
            db = await self._until_connected()
            try:
                cursor_text = self.store.get_value(CURSOR)
                rows = None if cursor_text is None else await db.read_since(int(cursor_text))
                if rows is None:  # first start, or a new database: catch up
                    cursor, active = await db.snapshot()
                    await self.apply(active)
                    await asyncio.to_thread(self.store.set_value, CURSOR, str(cursor))
                    continue
                if rows:
                    t0 = time.perf_counter()
                    await self.apply(rows)
                    count = sum(len(r.addresses) for r in rows)
                    log.log(logging.INFO if count >= BULK else logging.DEBUG,
                            "Fleet: applied %d ban(s) and unban(s) in %.3fs", count,
                            time.perf_counter() - t0)
                    # Off the event loop (a commit); a crash before it only means reading
                    # a few events again, which the enforcer finds active already.
                    await asyncio.to_thread(self.store.set_value, CURSOR, str(rows[-1].id))
                    continue
                await db.wait_doorbell(POLL)
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = await self._back_off("receiving", exc, delay)

    async def apply(self, rows: list[Any]) -> None:
        """Fleet decisions into this node's enforcer, in order: other nodes' bans of jails
        that receive, checked address by address; unbans lift here what another node lifted
        by hand."""
        jails = self._jails()
        now = self._clock()
        bans: list[Ban] = []
        lifted: list[tuple[str, BanKey]] = []
        for row in rows:
            node = row.node if isinstance(row.node, str) and _NODE.fullmatch(row.node) else None
            if node == self.node:
                continue
            jail = jails.get(row.jail) if isinstance(row.jail, str) else None
            if jail is None or not jail.settings.receives:
                continue
            addresses = row.addresses if isinstance(row.addresses, list) else [row.addresses]
            if node is None or row.kind not in ("ban", "unban"):
                self._refuse(row.node, addresses)
                continue
            targets = []
            for address in addresses:
                target = valid_target(address)
                if target is None:
                    self._refuse(node, [address])
                else:
                    targets.append(target)
            if row.kind == "unban":
                if bans:  # keep the order: a ban, then its unban
                    await self._ban(bans, now)
                    bans = []
                lifted.extend((node, BanKey(target, row.jail)) for target in targets)
                continue
            if lifted:
                await self._unban(lifted, now)
                lifted = []
            shape = self._local_ban(row, now)
            if shape is None:
                continue  # over already
            banned_at, bantime = shape
            ignored = [t for t in targets if self._ignored(row.jail, t)]
            for target in ignored:
                log.info("[%s] Fleet ban of %s from %s ignored: this node's ignoreip", row.jail,
                         target, node)
            skip = set(ignored)
            bans.extend(Ban(t, row.jail, banned_at, bantime, origin=node)
                        for t in targets if t not in skip)
        if bans:
            await self._ban(bans, now)
        if lifted:
            await self._unban(lifted, now)

    def _refuse(self, node: object, addresses: Sequence[object]) -> None:
        self.refused += len(addresses)
        for address in addresses[:10]:
            log.warning("Fleet: refused a row from node %r: %r is not an address or a "
                        "network of /%d (IPv4) or /%d (IPv6) or narrower, or the node name is "
                        "not one", str(node)[:64], str(address)[:80], MIN_PREFIX[4],
                        MIN_PREFIX[6])
        if len(addresses) > 10:
            log.warning("Fleet: ... and %d more refused from node %r", len(addresses) - 10,
                        str(node)[:64])

    async def _ban(self, bans: list[Ban], now: float) -> None:
        self.received += len(bans)
        await self.enforcer.ban(bans, now)

    async def _unban(self, lifted: list[tuple[str, BanKey]], now: float) -> None:
        by_node: dict[str, list[BanKey]] = {}
        for node, key in lifted:
            by_node.setdefault(node, []).append(key)
        for node, keys in by_node.items():
            await self.enforcer.unban(keys, now, reason=f"fleet: lifted on {node}")

    def _local_ban(self, row: Any, now: float) -> tuple[float, int] | None:
        """(banned_at, bantime) on this node's clock -- as old and as long as on the
        database's -- or None when the ban is over."""
        age = max(0.0, float(row.now) - float(row.banned_at))
        if row.expires_at is None:
            return now - age, -1
        bantime = round(float(row.expires_at) - float(row.banned_at))
        if float(row.expires_at) <= float(row.now) or bantime <= 0:
            return None
        return now - age, bantime

    # -- fleet-wide counting ------------------------------------------------------------

    async def _counting(self) -> None:
        while True:
            await asyncio.sleep(FAILURES_EVERY)
            if self.db is None or not self._failures:
                continue
            batch, self._failures = self._failures, {}
            now = self._clock()
            try:
                await self.db.add_failures([(jail, address, max(0.0, now - t))
                                            for (jail, address), times in batch.items()
                                            for t in times])
                await self._ban_reached(set(batch), now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("reporting failures", exc)

    async def _ban_reached(self, keys: set[tuple[str, str]], now: float) -> None:
        jails = self._jails()
        by_jail: dict[str, list[str]] = {}
        for jail, address in keys:
            by_jail.setdefault(jail, []).append(address)
        bans: list[Ban] = []
        for name, addresses in by_jail.items():
            config = jails.get(name)
            limit = config.settings.fleetmaxretry if config is not None else None
            if config is None or limit is None:
                continue
            counts = await self.db.count_failures(name, addresses, config.settings.findtime)
            for address, count in counts.items():
                if (count >= limit and not self.enforcer.is_banned(address, name)
                        and not self._ignored(name, address)):
                    log.info("[%s] %s failed %d times across the fleet within %ds "
                             "(fleetmaxretry %d)", name, address, count,
                             int(config.settings.findtime), limit)
                    bans.append(Ban(address, name, now, int(config.settings.bantime), count))
        if bans:
            await self.enforcer.ban(bans, now)

    # -- status -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            db = await self._until_connected()
            try:
                cursor = int(self.store.get_value(CURSOR) or 0)
                await db.heartbeat(cursor, self.store.outbox_size())
                self._nodes = await db.nodes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("heartbeat", exc)
            await asyncio.sleep(HEARTBEAT)

    @property
    def connected(self) -> bool:
        return self.db is not None and not self.error

    def metrics(self) -> dict[str, float]:
        """The fleet's gauges for /metrics (insight/metrics.py)."""
        mine = next((n for n in self._nodes if n.get("node") == self.node), {})
        unread = mine.get("lag_events", 0)
        return {"connected": float(self.connected),
                "queued": float(self.store.outbox_size()),
                "unread": float(unread) if isinstance(unread, int | float) else 0.0,
                "refused": float(self.refused)}

    async def fresh_status(self) -> dict[str, Any]:
        """`status` with the node list read now (bounded: a slow database shows the last)."""
        if self.db is not None:
            with contextlib.suppress(Exception):
                self._nodes = await asyncio.wait_for(self.db.nodes(), 2.0)
        return self.status()

    def status(self) -> dict[str, Any]:
        origins = Counter(ban.origin or self.node for ban in self.enforcer.active)
        return {"node": self.node, "database": self.settings.described,
                "connected": self.connected, "error": self.error,
                "queued": self.store.outbox_size(), "sent": self.sent,
                "received": self.received, "refused": self.refused,
                "cursor": int(cursor) if (cursor := self.store.get_value(CURSOR)) else 0,
                "caught_up": cursor is not None,
                "failures_dropped": self._failures_dropped,
                "nodes": [{k: (v if isinstance(v, str | int | float | None) else str(v))
                           for k, v in n.items()} for n in self._nodes],
                "bans_by_origin": dict(origins)}
