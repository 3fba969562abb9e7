"""Ban bookkeeping: the store first, then the firewall, then the log line.

Owns the order that makes bans survive anything: a ban is committed to the store before the
backend is asked to apply it and before ``Ban`` is logged or reported; at start the store's
active bans are re-applied with their remaining time and expired ones released; a backend that
fails keeps the ban in the store and retries it (shown in ``status``), never dropping it.
Must not: parse logs, decide bans, or read the clock itself (``now`` comes from the runtime).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..actions.base import Backend, BackendError, BanEntry, JailFirewall
from ..actions.command import BanDetails, DetailedBanEntry
from ..addr import target as _target
from ..core.subnets import covering
from ..store.base import ActiveBan, Ban, BanKey, Store
from .logsetup import NOTICE

log = logging.getLogger("banish.actions")


def _entry(address: str, jail: str, expires_at: float | None, now: float) -> BanEntry | None:
    target = _target(address)
    if expires_at is None:
        return BanEntry(target, jail, None)
    left = expires_at - now
    if left <= 0:
        return None
    return BanEntry(target, jail, left)


BULK = 1000


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
        seen: set[BanKey] = set()
        active = self.active
        for ban in bans:
            key = BanKey(ban.address, ban.jail)
            if key in active or key in seen:
                continue
            seen.add(key)
            fresh.append((key, ban))
        if not fresh:
            return []
        self.store.add_bans([ban for _, ban in fresh])  # committed: now it survives a crash
        self._networks = None
        totals = self.total_banned
        for key, ban in fresh:
            active[key] = ActiveBan(ban.address, ban.jail, ban.banned_at, ban.expires_at,
                                    ban.bantime, ban.origin)
            totals[ban.jail] = totals.get(ban.jail, 0) + 1
        new = [ban for _, ban in fresh]
        await self._apply(new, now, details or {})
        _log_each(new, "Ban")
        return new

    async def _apply(self, bans: Iterable[Ban], now: float,
                     details: Mapping[BanKey, BanDetails]) -> None:
        by_backend: dict[str, list[BanEntry]] = {}
        for ban in bans:
            name = self.jail_backend.get(ban.jail)
            plain = _entry(ban.address, ban.jail, ban.expires_at, now)
            if name is None or plain is None:
                continue
            entry = DetailedBanEntry(plain.address, plain.jail, plain.expires_in, details.get(
                ban.key, BanDetails(time=ban.banned_at, bantime=ban.bantime,
                                    failures=ban.failures, matches=ban.matches)))
            by_backend.setdefault(name, []).append(entry)
        for name, entries in by_backend.items():
            try:
                await self.backends[name].ban(entries)
            except BackendError as exc:
                log.error("Applying %d ban(s) with %s failed (will retry): %s",
                          len(entries), name, exc)
                for e in entries:
                    self.failed[BanKey(str(e.address), e.jail)] = str(exc)

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

    async def _lift(self, bans: Iterable[ActiveBan], now: float) -> None:
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
