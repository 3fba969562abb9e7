"""Ban bookkeeping: the store and the firewall, then the log line and the event.

Owns the order that makes bans survive anything: a ban is committed to the store before
``Ban`` is logged or published (the firewall applies it meanwhile); at start the store's active
bans are re-applied with their remaining time and expired ones released; a backend that fails
keeps the ban in the store and retries it (shown in ``status``), never dropping it. It fails
closed: when the store cannot be written (a full disk), bans stay in the firewall and in a
bounded queue (``unsaved``) that is written as soon as the store takes it again; until then
``durable`` is false and the jails keep their file positions where every earlier ban was
durable. Every change is published once on the event stream after the firewall holds it and
the store holds it (or queues it).
Owns the firewall backends' lifecycle too: `configure` (start and reload) creates, reshapes and
stops them with the same error handling.
Must not: parse logs, decide bans, or read the clock itself (``now`` comes from the runtime).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..actions.base import Backend, BackendError
from ..config.model import FriendsOnly, JailFirewall
from ..core.active import ActiveBans
from ..events import Ban, BanEvent, BanKey, EventKind
from ..store.base import OutboxEvent, Store, StoreError
from .logsetup import NOTICE
from .stream import EventStream

log = logging.getLogger("banish.actions")

BULK = 1000
UNSAVED_LIMIT = 1_000_000
"""Bans kept in memory for the store while it cannot be written (each ~200 bytes); beyond this
they are still enforced, but a restart before the store recovers would lose them."""
APPLY_SLICE = 20_000
"""Bans per firewall transaction when a batch is bigger (see `Enforcer._apply_slices`)."""

BackendFactory = Callable[[str], Backend]


def _log_each(bans: Sequence[Ban], verb: str, reason: str = "") -> None:
    """One NOTICE line per ban (recidive reads them); a bulk load gets one summary line
    instead, so loading a 100k blocklist neither floods the log nor trips recidive."""
    suffix = f" ({reason})" if reason else ""
    if len(bans) > BULK:
        jails = sorted({b.jail for b in bans})
        log.log(NOTICE, "[%s] %s %d addresses at once%s", ",".join(jails), verb, len(bans),
                suffix)
        level = logging.DEBUG
    else:
        level = NOTICE
    if log.isEnabledFor(level):
        for ban in bans:
            log.log(level, "[%s] %s %s%s", ban.jail, verb, ban.address, suffix)


@dataclass
class Enforcer:
    """Active bans of every jail, kept equal in the store, in memory and in the firewall."""

    store: Store
    create_backend: BackendFactory
    stream: EventStream = field(default_factory=EventStream)
    backends: dict[str, Backend] = field(default_factory=dict)
    jail_backend: dict[str, str] = field(default_factory=dict)
    """Jail -> native backend name; jails enforced only by scripts are not listed."""
    active: ActiveBans = field(default_factory=ActiveBans)
    failed: dict[BanKey, str] = field(default_factory=dict)
    backend_errors: dict[str, str] = field(default_factory=dict)
    """Backend -> why it could not be started or reshaped (retried; shown in status)."""
    total_banned: dict[str, int] = field(default_factory=dict)
    unsaved: list[Ban] = field(default_factory=list)
    """Bans the firewall holds but the store could not record yet (retried every tick)."""
    store_error: str = ""
    _firewalls: dict[str, list[JailFirewall]] = field(default_factory=dict)
    _friends: tuple[FriendsOnly, ...] = ()
    _friends_backend: str | None = None
    _unlifted: set[str] = field(default_factory=set)
    """Backends an unban failed on: reconciled at the next tick, so the address is let go."""
    _reconcile_errors: dict[str, str] = field(default_factory=dict)
    _pending: set[BanKey] = field(default_factory=set)
    share: Callable[[Sequence[Ban]], list[OutboxEvent]] | None = None
    """The fleet's share of new bans, queued in the store's own transaction (a crash keeps
    a ban and its place in the fleet's outbox together, or neither); ``shared`` is told once
    they are committed (the fleet's sender sends them at once)."""
    shared: Callable[[], None] | None = None
    """Bans being committed and applied right now: banning one again meanwhile is a no-op,
    as for an active ban."""

    # -- structure ------------------------------------------------------------------------

    async def configure(self, jails: Mapping[str, tuple[str | None, JailFirewall]],
                        now: float, friends: Sequence[FriendsOnly] = ()) -> None:
        """Make the backends hold the structure of ``jails`` (name -> (backend, firewall))
        and the friends-only services: create backends newly named, reshape the others (each
        in one transaction: a changed allow list never leaves a gap), stop the ones no jail
        uses. Friends-only services go to the first native firewall the jails use (else
        ``auto``: nftables, or ipset).

        A backend that cannot be created or started is logged and kept in
        ``backend_errors``; its jails' bans stay recorded and are retried by `reconcile`, and
        the jails run all the same (fail2ban does the same).
        """
        wanted: dict[str, list[JailFirewall]] = {}
        for kind, firewall in jails.values():
            if kind is not None:
                wanted.setdefault(kind, []).append(firewall)
        self.jail_backend = {name: b for name, (b, _) in jails.items() if b is not None}
        self._friends = tuple(friends)
        self._friends_backend = None
        if friends:
            self._friends_backend = next((n for n in wanted if n != "null"), "auto")
            wanted.setdefault(self._friends_backend, [])
        for name in [n for n in self.backends if n not in wanted]:
            backend = self.backends.pop(name)
            self._firewalls.pop(name, None)
            self.backend_errors.pop(name, None)
            try:
                await backend.stop()
            except BackendError as exc:
                log.error("Stopping the %s firewall failed: %s", name, exc)
        for name, firewalls in wanted.items():
            await self._start_backend(name, firewalls)
        await self.reconcile(now)

    async def _start_backend(self, name: str, firewalls: list[JailFirewall]) -> bool:
        self._firewalls[name] = firewalls
        friends = self._friends if name == self._friends_backend else ()
        try:
            backend = self.backends.get(name)
            if backend is None:
                backend = self.backends[name] = self.create_backend(name)
            await backend.start(firewalls, friends)
        except (BackendError, OSError, ValueError) as exc:
            message = str(exc) or type(exc).__name__
            if self.backend_errors.get(name) != message:
                log.error("Starting the %s firewall failed (bans will be retried): %s",
                          name, message)
            self.backend_errors[name] = message
            return False
        if self.backend_errors.pop(name, None) is not None:
            log.log(NOTICE, "The %s firewall works again", name)
        return True

    async def start(self, jails: Mapping[str, tuple[str | None, JailFirewall]],
                    now: float, friends: Sequence[FriendsOnly] = ()) -> None:
        """Create firewall structure, release what expired while down, re-apply the rest."""
        for ban in self.store.release_expired(now):
            log.log(NOTICE, "[%s] Unban %s (expired while banish was not running)",
                    ban.jail, ban.address)
        self.active = ActiveBans(self.store.active_bans(now))
        await self.configure(jails, now, friends)
        restored = list(self.active)
        if restored:
            # fail2ban's "Restore Ban" line, so a ban whose "Ban" line a crash cut off is
            # still in the log (a bulk restore gets one count line, like a bulk ban).
            _log_each(restored, "Restore Ban")
            log.log(NOTICE, "Restored %d active ban(s) from the store", len(restored))
            self.stream.publish(BanEvent(EventKind.RESTORE, now, tuple(restored)))

    async def reconcile(self, now: float) -> None:
        """Make every backend hold exactly the active bans (repairs hand-made changes)."""
        for name, firewalls in self._firewalls.items():
            if name in self.backend_errors and not await self._start_backend(name, firewalls):
                for ban in self.active:
                    if self.jail_backend.get(ban.jail) == name:
                        self.failed[ban.key] = self.backend_errors[name]
                continue
            backend = self.backends[name]
            bans = [b for b in self.active if self.jail_backend.get(b.jail) == name]
            try:
                await backend.reconcile(bans, now)
            except BackendError as exc:
                if self._reconcile_errors.get(name) != str(exc):  # once, not every second
                    log.error("Reconcile with %s failed (retried every second): %s", name, exc)
                self._reconcile_errors[name] = str(exc)
                for b in bans:
                    self.failed[b.key] = str(exc)
            else:
                if self._reconcile_errors.pop(name, None) is not None:
                    log.log(NOTICE, "Reconcile with %s works again", name)
                self._unlifted.discard(name)
                for b in bans:
                    self.failed.pop(b.key, None)

    # -- bans -----------------------------------------------------------------------------

    def is_banned(self, address: str, jail: str) -> bool:
        """Banned in ``jail``, by itself or inside a banned network."""
        return self.active.is_banned(address, jail)

    def networks(self, jail: str) -> list[str]:
        return self.active.networks(jail)

    def banned_in(self, jail: str) -> list[Ban]:
        return self.active.banned_in(jail)

    async def ban(self, bans: Sequence[Ban], now: float) -> list[Ban]:
        """Record, apply and publish ``bans``; returns the ones that were new (others were
        already active or in flight)."""
        fresh: list[Ban] = []
        keys: list[BanKey] = []
        pending = self._pending
        active = self.active
        for ban in bans:
            key = ban[:2]  # (address, jail): equal to its BanKey, built in C
            if key in active or key in pending:
                continue
            pending.add(key)  # type: ignore[arg-type]
            keys.append(key)  # type: ignore[arg-type]
            fresh.append(ban)
        if not fresh:
            return []
        try:
            # The commit (a worker thread; SQLite runs without the GIL) overlaps the firewall
            # transactions: at 100,000 bans each takes most of a second. Nothing is reported
            # before both are done; if the commit fails the firewall change is taken back, and
            # a crash in between leaves kernel-only bans that the start-up reconcile removes.
            # Order matters: tasks start in this order, so the first slice reaches nft before
            # anything else competes for the event loop.
            done = await asyncio.gather(
                self._record(fresh),
                *self._apply_slices(fresh, now), return_exceptions=True)
            stored = done[0]
            if isinstance(stored, StoreError):
                self._keep_unsaved(fresh, stored)  # fail closed: the firewall keeps them
            elif isinstance(stored, BaseException):  # a bug, not the disk: take them back
                await self._lift(fresh)
                for ban in fresh:
                    self.failed.pop(ban.key, None)
                raise stored
            active.add(fresh)
        finally:
            pending.difference_update(keys)
        totals = self.total_banned
        for jail, count in Counter(b.jail for b in fresh).items():
            totals[jail] = totals.get(jail, 0) + count
        for outcome in done[1:]:
            if isinstance(outcome, BaseException):  # a bug: refusals become retries
                raise outcome
        _log_each(fresh, "Ban")
        self.stream.publish(BanEvent(EventKind.BAN, now, tuple(fresh)))
        return fresh

    async def _record(self, bans: Sequence[Ban]) -> None:
        outbox = self.share(bans) if self.share is not None else []
        if outbox:
            await asyncio.to_thread(self.store.add_bans, bans, outbox)
            if self.shared is not None:
                self.shared()
        else:
            await asyncio.to_thread(self.store.add_bans, bans)

    @property
    def firewall_errors(self) -> dict[str, str]:
        """Backend -> what is wrong with it now (not started, or failing to reconcile)."""
        return {**self._reconcile_errors, **self.backend_errors}

    @property
    def durable(self) -> bool:
        """Every ban made so far is in the store (a file position may be saved)."""
        return not self.unsaved

    def _keep_unsaved(self, bans: Sequence[Ban], error: StoreError) -> None:
        if not self.unsaved:
            log.error("The store cannot be written (%s): %d ban(s) stay in the firewall and "
                      "wait in memory to be written; retried every second", error, len(bans))
        self.store_error = str(error)
        room = UNSAVED_LIMIT - len(self.unsaved)
        if room < len(bans):
            log.error("%d ban(s) beyond the %d waiting for the store: enforced, but lost if "
                      "banish restarts before the store works again", len(bans) - room,
                      UNSAVED_LIMIT)
        self.unsaved.extend(bans[:max(room, 0)])

    async def write_unsaved(self) -> int:
        """Write the bans that waited for the store; returns how many were written."""
        if not self.unsaved:
            return 0
        batch, self.unsaved = self.unsaved, []
        batch = [b for b in batch if b.key in self.active]  # unbanned meanwhile: gone
        try:
            await self._record(batch)
        except StoreError as exc:
            self.unsaved = batch + self.unsaved
            self.store_error = str(exc)
            return 0
        self.store_error = ""
        log.log(NOTICE, "The store works again: wrote %d ban(s) that had waited", len(batch))
        return len(batch)

    def _apply_slices(self, bans: Sequence[Ban], now: float
                      ) -> list[Coroutine[Any, Any, None]]:
        """One backend call per APPLY_SLICE bans of a backend, to be awaited together: each
        builds its transaction, then waits for the backend's lock, so slice 2 is built while
        nft applies slice 1 (each slice is still all or nothing)."""
        by_backend: dict[str, list[Ban]] = {}
        jail_backend = self.jail_backend
        for ban in bans:
            name = jail_backend.get(ban.jail)
            if name is not None:
                by_backend.setdefault(name, []).append(ban)
        jobs: list[Coroutine[Any, Any, None]] = []
        for name, part in by_backend.items():
            # At most two slices built ahead per backend: building them all at once would take
            # the CPU from the nft process applying the first one.
            window = asyncio.Semaphore(2)
            jobs += [self._apply(name, part[i:i + APPLY_SLICE], now, window)
                     for i in range(0, len(part), APPLY_SLICE)]
        return jobs

    async def _apply(self, name: str, bans: Sequence[Ban], now: float,
                     window: asyncio.Semaphore) -> None:
        async with window:
            backend = self.backends.get(name)
            if backend is None or name in self.backend_errors:
                self._refused(name, [b.key for b in bans],
                              self.backend_errors.get(name, "not started"))
                return
            try:
                await backend.ban(bans, now)
            except BackendError as exc:
                self._refused(name, [b.key for b in bans], str(exc))

    def _refused(self, name: str, keys: list[BanKey], reason: str) -> None:
        """A backend refused bans: they stay recorded and are retried (shown in status)."""
        log.error("Applying %d ban(s) with %s failed (will retry): %s", len(keys), name, reason)
        for key in keys:
            self.failed[key] = reason

    async def retry_failed(self, now: float) -> None:
        """Bans a backend refused earlier: reconcile, which also rebuilds lost structure."""
        self.failed = {k: v for k, v in self.failed.items() if k in self.active}
        if self.failed or self.backend_errors or self._unlifted:
            await self.reconcile(now)

    async def unban(self, keys: Iterable[BanKey], now: float, *, reason: str = "") -> list[Ban]:
        """Lift bans (by hand or on reload); returns the bans that were active."""
        found = [k for k in keys if k in self.active]
        if not found:
            return []
        self.store.remove_bans(found)
        if self.unsaved:
            gone = set(found)
            self.unsaved = [b for b in self.unsaved if b.key not in gone]
        lifted = self.active.remove(found)
        await self._lift(lifted)
        for ban in lifted:
            self.failed.pop(ban.key, None)
        _log_each(lifted, "Unban", reason)
        self.stream.publish(BanEvent(EventKind.UNBAN, now, tuple(lifted), reason))
        return lifted

    async def _lift(self, bans: Iterable[Ban]) -> None:
        by_backend: dict[str, list[BanKey]] = {}
        for ban in bans:
            name = self.jail_backend.get(ban.jail)
            if name is not None and name in self.backends:
                by_backend.setdefault(name, []).append(ban.key)
        for name, keys in by_backend.items():
            try:
                await self.backends[name].unban(keys)
            except BackendError as exc:
                log.error("Lifting %d ban(s) with %s failed (retried): %s", len(keys), name,
                          exc)
                self._unlifted.add(name)

    async def expire(self, now: float) -> int:
        """Release every ban whose time is over. With the store unwritable, the in-memory
        book still lets them go (firewall timeouts have already); the store releases its rows
        once it can (they are past their end, so nothing re-applies them meanwhile)."""
        try:
            released = self.store.release_expired(now)
        except StoreError as exc:
            self.store_error = str(exc)
            released = self.active.over(now)
        if not released:
            return 0
        self.active.remove(b.key for b in released)
        for ban in released:
            self.failed.pop(ban.key, None)
        await self._lift(released)
        for ban in released:
            log.log(NOTICE, "[%s] Unban %s", ban.jail, ban.address)
        self.stream.publish(BanEvent(EventKind.EXPIRE, now, tuple(released)))
        return len(released)

    def next_expiry(self) -> float | None:
        return self.active.next_end()

    async def stop(self) -> None:
        for name, backend in self.backends.items():
            try:
                await backend.stop()
            except BackendError as exc:
                log.error("Stopping %s failed: %s", name, exc)
