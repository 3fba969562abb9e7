"""Ban bookkeeping: the store and the firewall, then the log line.

Owns the order that makes bans survive anything: a ban is committed to the store before
``Ban`` is logged or reported (the firewall applies it meanwhile); at start the store's
active bans are re-applied with their remaining time and expired ones released; a backend that
fails keeps the ban in the store and retries it (shown in ``status``), never dropping it.
Must not: parse logs, decide bans, or read the clock itself (``now`` comes from the runtime).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..actions.base import Backend, BackendError, BanEntry, JailFirewall, TextBans
from ..actions.command import BanDetails, DetailedBanEntry
from ..addr import parse_address
from ..addr import target as _target
from ..core.subnets import covering
from ..store.base import ActiveBan, Ban, BanKey, Store
from .logsetup import NOTICE

log = logging.getLogger("banish.actions")


def _entry(address: str, jail: str, expires_at: float | None, now: float) -> BanEntry | None:
    left = None if expires_at is None else expires_at - now
    if left is not None and left <= 0:
        return None
    if "/" in address:
        return BanEntry(_target(address), jail, left)
    host = parse_address(address)  # canonical, as BanEntry.of_host wants it
    if host is None:
        raise ValueError(f"not an IP address: {address!r}")
    return BanEntry.of_host(host, jail, left)


BULK = 1000
APPLY_SLICE = 20_000
"""Bans per firewall transaction when a batch is bigger (see `Enforcer._apply_slices`)."""


def _log_each(bans: Sequence[Ban] | Sequence[ActiveBan], verb: str, reason: str = "") -> None:
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
    backends: Mapping[str, Backend]
    jail_backend: dict[str, str] = field(default_factory=dict)
    active: dict[BanKey, ActiveBan] = field(default_factory=dict)
    failed: dict[BanKey, str] = field(default_factory=dict)
    total_banned: dict[str, int] = field(default_factory=dict)
    _networks: dict[str, list[str]] | None = None
    """Cache of network bans per jail; None after any change to ``active``."""
    _pending: set[BanKey] = field(default_factory=set)
    """Bans being committed and applied right now: banning one again meanwhile is a no-op,
    as for an active ban."""

    async def start(self, firewalls: Sequence[JailFirewall], jail_backend: dict[str, str],
                    now: float) -> None:
        """Create firewall structure, release what expired while down, re-apply the rest."""
        self.jail_backend = dict(jail_backend)
        for name, backend in self.backends.items():
            try:
                await backend.start([f for f in firewalls if jail_backend.get(f.name) == name])
            except BackendError as exc:
                # As fail2ban: log and go on; bans are recorded and retried by reconcile.
                log.error("Starting the %s firewall failed (bans will be retried): %s",
                          name, exc)
        for ban in self.store.release_expired(now):
            log.log(NOTICE, "[%s] Unban %s (expired while banish was not running)",
                    ban.jail, ban.address)
        self.active = {b.key: b for b in self.store.active_bans(now)}
        self._networks = None
        restored = len(self.active)
        await self.reconcile(now)
        if restored:
            log.log(NOTICE, "Restored %d active ban(s) from the store", restored)

    async def reconcile(self, now: float) -> None:
        """Make every backend hold exactly the active bans (repairs hand-made changes)."""
        by_backend: dict[str, list[BanEntry]] = {name: [] for name in self.backends}
        for ban in self.active.values():
            name = self.jail_backend.get(ban.jail)
            entry = _entry(ban.address, ban.jail, ban.expires_at, now)
            if name is not None and entry is not None:
                by_backend[name].append(entry)
        for name, entries in by_backend.items():
            try:
                await self.backends[name].reconcile(entries)
            except BackendError as exc:
                log.error("Reconcile with %s failed: %s", name, exc)
                for e in entries:
                    self.failed[BanKey(str(e.address), e.jail)] = str(exc)
            else:
                for e in entries:
                    self.failed.pop(BanKey(str(e.address), e.jail), None)

    def is_banned(self, address: str, jail: str) -> bool:
        """Banned in ``jail``, by itself or inside a banned network."""
        if BanKey(address, jail) in self.active:
            return True
        networks = self.networks(jail)
        return bool(networks) and bool(covering(address, networks))

    def networks(self, jail: str) -> list[str]:
        """The jail's active network (subnet) bans; few, so a list is fine."""
        if self._networks is None:
            self._networks = {}
            for key in self.active:
                if "/" in key.address:
                    self._networks.setdefault(key.jail, []).append(key.address)
        return self._networks.get(jail, [])

    async def ban(self, bans: Sequence[Ban], now: float,
                  details: Mapping[BanKey, BanDetails] | None = None) -> list[Ban]:
        """Record and apply ``bans``; returns the ones that were new (others already active).

        ``details`` (captured fields such as the user, ban count) feed action.d tags.
        """
        fresh: list[tuple[BanKey, Ban]] = []
        pending = self._pending
        active = self.active
        for ban in bans:
            key = BanKey(ban.address, ban.jail)
            if key in active or key in pending:
                continue
            pending.add(key)
            fresh.append((key, ban))
        if not fresh:
            return []
        new = [ban for _, ban in fresh]
        records: list[ActiveBan] = []

        async def record() -> None:  # runs while nft and SQLite work (see below)
            records.extend([ActiveBan(address, jail, at, None if bantime < 0 else at + bantime,
                                      bantime, origin)
                            for address, jail, at, bantime, _, _, origin in new])

        try:
            # The commit (a worker thread; SQLite runs without the GIL) overlaps the firewall
            # transactions: at 100,000 bans each takes most of a second. Nothing is reported
            # before both are done; if the commit fails the firewall change is taken back, and
            # a crash in between leaves kernel-only bans that the start-up reconcile removes.
            # Order matters: tasks start in this order, so the first slice reaches nft before
            # anything else competes for the event loop.
            done = await asyncio.gather(
                asyncio.to_thread(self.store.add_bans, new),
                *self._apply_slices(new, now, details or {}), record(), return_exceptions=True)
            stored = done[0]
            if isinstance(stored, BaseException):
                await self._lift(new, now)
                for key, _ in fresh:
                    self.failed.pop(key, None)
                raise stored
            self._networks = None
            active.update(zip((key for key, _ in fresh), records, strict=True))
        finally:
            pending.difference_update(key for key, _ in fresh)
        totals = self.total_banned
        for jail, count in Counter(b.jail for b in new).items():
            totals[jail] = totals.get(jail, 0) + count
        for outcome in done[1:]:
            if isinstance(outcome, BaseException):  # a bug: refusals become retries
                raise outcome
        _log_each(new, "Ban")
        return new

    def _apply_slices(self, bans: Sequence[Ban], now: float,
                      details: Mapping[BanKey, BanDetails]) -> list[Coroutine[Any, Any, None]]:
        """One backend call per APPLY_SLICE bans of a backend, to be awaited together: each
        builds its entries and transaction, then waits for the backend's lock, so slice 2 is
        built while nft applies slice 1 (each slice is still all or nothing)."""
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
            jobs += [self._apply(name, part[i:i + APPLY_SLICE], now, details, window)
                     for i in range(0, len(part), APPLY_SLICE)]
        return jobs

    async def _apply(self, name: str, bans: Sequence[Ban], now: float,
                     details: Mapping[BanKey, BanDetails], window: asyncio.Semaphore) -> None:
        async with window:
            await self._apply_now(name, bans, now, details)

    async def _apply_now(self, name: str, bans: Sequence[Ban], now: float,
                         details: Mapping[BanKey, BanDetails]) -> None:
        backend = self.backends[name]
        if isinstance(backend, TextBans) and not backend.uses_details:
            await self._apply_texts(name, backend, bans, now)
            return
        entries: list[BanEntry] = []
        for ban in bans:
            entry = _entry(ban.address, ban.jail, ban.expires_at, now)
            if entry is None:
                continue
            if backend.uses_details:
                entry = DetailedBanEntry(entry.address, entry.jail, entry.expires_in, details.get(
                    ban.key, BanDetails(time=ban.banned_at, bantime=ban.bantime,
                                        failures=ban.failures, matches=ban.matches)))
            entries.append(entry)
        try:
            await backend.ban(entries)
        except BackendError as exc:
            self._refused(name, [BanKey(str(e.address), e.jail) for e in entries], exc)

    async def _apply_texts(self, name: str, backend: TextBans, bans: Sequence[Ban],
                           now: float) -> None:
        by_jail: dict[str, list[tuple[str, float | None]]] = {}
        for ban in bans:
            expires_at = ban.expires_at
            left = None if expires_at is None else expires_at - now
            if left is None or left > 0:
                by_jail.setdefault(ban.jail, []).append((ban.address, left))
        for jail, texts in by_jail.items():
            try:
                await backend.ban_texts(jail, texts)
            except BackendError as exc:
                self._refused(name, [BanKey(address, jail) for address, _ in texts], exc)

    def _refused(self, name: str, keys: list[BanKey], exc: BackendError) -> None:
        """A backend refused bans: they stay recorded and are retried (shown in status)."""
        log.error("Applying %d ban(s) with %s failed (will retry): %s", len(keys), name, exc)
        for key in keys:
            self.failed[key] = str(exc)

    async def retry_failed(self, now: float) -> None:
        """Bans a backend refused earlier: reconcile, which also rebuilds lost structure."""
        self.failed = {k: v for k, v in self.failed.items() if k in self.active}
        if self.failed:
            await self.reconcile(now)

    async def unban(self, keys: Iterable[BanKey], now: float, *, reason: str = "") -> list[BanKey]:
        """Lift bans (by hand or on reload); returns the keys that were active."""
        found = [k for k in keys if k in self.active]
        if not found:
            return []
        self.store.remove_bans(found)
        self._networks = None
        lifted = [self.active.pop(k) for k in found]
        await self._lift(lifted, now)
        for ban in lifted:
            self.failed.pop(ban.key, None)
        _log_each(lifted, "Unban", reason)
        return found

    async def _lift(self, bans: Iterable[ActiveBan] | Iterable[Ban], now: float) -> None:
        by_backend: dict[str, list[BanEntry]] = {}
        for ban in bans:
            name = self.jail_backend.get(ban.jail)
            if name is None:
                continue
            by_backend.setdefault(name, []).append(BanEntry(_target(ban.address), ban.jail, None))
        for name, entries in by_backend.items():
            try:
                await self.backends[name].unban(entries)
            except BackendError as exc:
                log.error("Lifting %d ban(s) with %s failed: %s", len(entries), name, exc)

    async def expire(self, now: float) -> int:
        """Release every ban whose time is over."""
        released = self.store.release_expired(now)
        if not released:
            return 0
        self._networks = None
        for ban in released:
            self.active.pop(ban.key, None)
            self.failed.pop(ban.key, None)
        await self._lift(released, now)
        for ban in released:
            log.log(NOTICE, "[%s] Unban %s", ban.jail, ban.address)
        return len(released)

    def next_expiry(self) -> float | None:
        ends = [b.expires_at for b in self.active.values() if b.expires_at is not None]
        return min(ends) if ends else None

    def banned_in(self, jail: str) -> list[ActiveBan]:
        return [b for b in self.active.values() if b.jail == jail]

    async def stop(self) -> None:
        for name, backend in self.backends.items():
            try:
                await backend.stop()
            except BackendError as exc:
                log.error("Stopping %s failed: %s", name, exc)
