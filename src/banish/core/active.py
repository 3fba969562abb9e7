"""The active bans, as a pure book: who is banned in which jail, until when.

Owns the questions asked of active bans on the hot path -- is this address banned in this jail,
by itself or inside a banned network? which bans of a jail are there (for escalation)? which
are over at ``now``? -- for the daemon's enforcer and for ``banish scan``'s replay alike, so both
skip the same failures and escalate the same way. Must not do I/O or read the clock: the
enforcer keeps the store and the firewall equal to this book.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from banish.core.subnets import covering
from banish.events import Ban, BanKey


class ActiveBans:
    """Active bans by key, with the few network bans of each jail kept apart for look-ups.

    A book made ``over`` another reads through to it: the daemon decides a batch of failures
    in a book over its active bans, so a ban decided early in the batch already counts for the
    failures after it (as it would have live, and as ``banish scan`` replays it), while only
    the batch's own bans go to the enforcer (iteration and `add` see this book alone).
    """

    __slots__ = ("_bans", "_networks", "_over")

    def __init__(self, bans: Iterable[Ban] = (), *, over: ActiveBans | None = None) -> None:
        self._bans: dict[BanKey, Ban] = {b.key: b for b in bans}
        self._networks: dict[str, list[str]] | None = None
        """Network bans per jail; None after a change (rebuilt on demand)."""
        self._over = over

    def __contains__(self, key: object) -> bool:
        return key in self._bans or (self._over is not None and key in self._over)

    def __len__(self) -> int:
        return len(self._bans)

    def __iter__(self) -> Iterator[Ban]:
        return iter(self._bans.values())

    def get(self, key: BanKey) -> Ban | None:
        return self._bans.get(key)

    def ban_keys(self) -> list[BanKey]:
        return [b.key for b in self._bans.values()]

    def add(self, bans: Iterable[Ban]) -> None:
        """Record bans; one of a key already present replaces it only if it ends later."""
        table = self._bans
        for ban in bans:
            # ban[:2] is (address, jail): equal to, and hashed as, its BanKey, and built in C
            # (a bulk load adds 100,000 bans; the key property costs a third of that).
            key = ban[:2]
            old = table.get(key)  # type: ignore[call-overload]
            if old is None or _ends_later(ban, old):
                table[key] = ban  # type: ignore[index]
        self._networks = None

    def remove(self, keys: Iterable[BanKey]) -> list[Ban]:
        """Take bans out; returns the ones that were there."""
        table = self._bans
        out = [b for b in (table.pop(k, None) for k in keys) if b is not None]
        if out:
            self._networks = None
        return out

    def over(self, now: float) -> list[Ban]:
        """The bans whose end is at or before ``now`` (still in the book)."""
        return [b for b in self._bans.values()
                if b.bantime >= 0 and b.banned_at + b.bantime <= now]

    def is_banned(self, address: str, jail: str) -> bool:
        """Banned in ``jail``, by itself or inside a banned network."""
        if BanKey(address, jail) in self:
            return True
        networks = self.networks(jail)
        return bool(networks) and bool(covering(address, networks))

    def networks(self, jail: str) -> list[str]:
        """The jail's active network (subnet) bans; few, so a list is fine."""
        if self._networks is None:
            self._networks = {}
            for address, jail in self._bans:  # keys may be plain (address, jail) tuples
                if "/" in address:
                    self._networks.setdefault(jail, []).append(address)
        own = self._networks.get(jail, [])
        return own + self._over.networks(jail) if self._over is not None else own

    def banned_in(self, jail: str) -> list[Ban]:
        """The jail's bans, those of the book read through included."""
        own = [b for b in self._bans.values() if b.jail == jail]
        return own + self._over.banned_in(jail) if self._over is not None else own

    def next_end(self) -> float | None:
        ends = [b.banned_at + b.bantime for b in self._bans.values() if b.bantime >= 0]
        return min(ends) if ends else None


def _ends_later(new: Ban, old: Ban) -> bool:
    if old.bantime < 0:
        return False
    return new.bantime < 0 or new.banned_at + new.bantime > old.banned_at + old.bantime
