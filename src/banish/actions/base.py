"""The firewall backend contract: what the daemon hands to whatever enforces its bans.

Owns the `Backend` protocol (five batched, async methods taking ``banish.events.Ban`` -- the one
shape of a ban -- the jails' `JailFirewall` and the friends-only services' `FriendsOnly`),
`BackendError`, `BanEntry`, the parsed form (address object, seconds left) that backends
working with address objects build from a ``Ban`` for themselves, and `Shape`, ``start``'s
arguments in the form backends compare to skip a reshape that changes nothing. Must not run
commands, read the clock or know about any particular firewall: `nftables.py`, `ipset.py`,
`iptables.py`, `null.py` supply that.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol, TypeAlias

from banish.addr import as_network, target
from banish.config.model import Blocktype, FriendsOnly, JailFirewall, Port, Transport
from banish.errors import BanishError
from banish.events import Ban, BanKey

__all__ = ["Address", "Backend", "BackendError", "BanEntry", "Blocktype", "FriendsOnly",
           "JailFirewall", "Network", "Port", "Shape", "Transport", "as_network", "collapsed",
           "entries", "jails_by_name", "key_entries"]

Network: TypeAlias = IPv4Network | IPv6Network
Address: TypeAlias = IPv4Address | IPv6Address | Network
"""A single address or a CIDR network; a host is the same as its /32 or /128 network."""


class BackendError(BanishError):
    """The firewall refused a change or could not be read; nothing of that call was applied.

    Every backend call is one transaction, so after this error the firewall is as it was
    before the call and the daemon may retry, or call `Backend.reconcile` to repair it.
    """


@dataclass(frozen=True, slots=True)
class BanEntry:
    """One address or network banned in one jail, parsed: a backend's own working form of a
    `Ban` (see `entries`), never part of the contract.

    ``expires_in`` is the time left in seconds, counted from the moment of the call (the
    daemon computes it from its own clock); ``None`` is a permanent ban. Firewalls that keep
    timeouts in whole seconds round it up, so a ban is never shorter than asked. For `unban`
    only ``address`` and ``jail`` matter. ``address`` is canonical after construction: a host
    is an address object (never a /32 network) and IPv4-mapped IPv6 is IPv4, so two entries
    for the same thing compare equal.
    """

    address: Address
    jail: str
    expires_in: float | None = None
    """Seconds left; None is permanent."""

    def __post_init__(self) -> None:
        if self.expires_in is not None and not (
            math.isfinite(self.expires_in) and self.expires_in > 0
        ):
            raise ValueError(
                f"ban of {self.address} in {self.jail}: expires_in must be a positive number "
                f"of seconds or None (permanent), not {self.expires_in!r}"
            )
        object.__setattr__(self, "address", _canonical(self.address))

    @classmethod
    def of_host(cls, address: IPv4Address | IPv6Address, jail: str,
                expires_in: float | None) -> BanEntry:
        """The entry the constructor makes, for a host address that is already canonical
        (IPv4-mapped IPv6 already IPv4, as ``banish.addr.parse_address`` returns it) and a time
        already known to be positive or None, without checking them again: a bulk load builds
        100,000 entries and the checks cost more than the objects."""
        entry = object.__new__(cls)
        object.__setattr__(entry, "address", address)
        object.__setattr__(entry, "jail", jail)
        object.__setattr__(entry, "expires_in", expires_in)
        return entry

    @property
    def network(self) -> Network:
        """The banned network; a single address is its /32 or /128."""
        return _network(self.address)


def _canonical(address: Address) -> Address:
    """A host as an address object, a network as a network, IPv4-mapped IPv6 as IPv4.

    Written with the cheap attribute paths only: ``ip_network(obj)`` formats and re-parses
    text, which costs more than everything else a ban of 100,000 addresses does.
    """
    if isinstance(address, IPv4Address):
        return address
    if isinstance(address, IPv6Address):
        mapped = address.ipv4_mapped
        return address if mapped is None else mapped
    if isinstance(address, IPv4Network | IPv6Network):
        if address.prefixlen == address.max_prefixlen:
            return _canonical(address.network_address)
        if isinstance(address, IPv6Network) and address.prefixlen >= 96:
            mapped = address.network_address.ipv4_mapped
            if mapped is not None:
                return IPv4Network((int(mapped), address.prefixlen - 96))
        return address
    raise TypeError(f"ban address must be an ipaddress object, not {address!r}")


def _network(a: Address) -> Network:
    if isinstance(a, IPv4Address):
        return IPv4Network((int(a), 32))
    if isinstance(a, IPv6Address):
        return IPv6Network((int(a), 128))
    return a


def jails_by_name(jails: Sequence[JailFirewall]) -> dict[str, JailFirewall]:
    """``start``'s argument by name; two jails of one name are a caller's bug."""
    by_name = {j.name: j for j in jails}
    if len(by_name) != len(jails):
        raise ValueError("two jails share a name")
    return by_name


def collapsed(nets: Iterable[Network], version: int) -> list[Network]:
    """The networks of one IP version with overlaps merged: interval sets refuse overlapping
    members, and fewer members or rules are fewer to walk (ignoreip often lists both
    127.0.0.1 and 127.0.0.0/8)."""
    if version == 4:
        return list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv4Network)))
    return list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv6Network)))


def _canonical_list(nets: Iterable[Network]) -> tuple[Network, ...]:
    return (*collapsed(nets, 4), *collapsed(nets, 6))


@dataclass(frozen=True, slots=True)
class Shape:
    """What `Backend.start` was given, by name, with every allow and friends list merged and
    sorted: two shapes are equal exactly when they call for the same firewall, whatever the
    order of jails, services or addresses. Backends compare it with the last one applied so
    that a repeated `start` (the daemon reshapes on every name that resolves anew) does
    nothing when nothing changed."""

    jails: dict[str, JailFirewall]
    services: dict[str, FriendsOnly]

    @classmethod
    def of(cls, jails: Sequence[JailFirewall], services: Sequence[FriendsOnly]) -> Shape:
        """Names checked (two of one kind sharing a name are a caller's bug), lists merged."""
        by_name = jails_by_name(jails)
        friends = {s.name: s for s in services}
        if len(friends) != len(services):
            raise ValueError("two friends-only services share a name")
        return cls(
            {n: replace(j, allow=_canonical_list(j.allow)) for n, j in by_name.items()},
            {n: replace(s, friends=_canonical_list(s.friends)) for n, s in friends.items()},
        )

    def without_lists(self) -> Shape:
        """The same shape with every allow and friends list empty: what changes when only
        addresses change."""
        return Shape({n: replace(j, allow=()) for n, j in self.jails.items()},
                     {n: replace(s, friends=()) for n, s in self.services.items()})


def entries(bans: Sequence[Ban], now: float) -> list[BanEntry]:
    """The bans still running at ``now`` as entries with the seconds each has left."""
    out: list[BanEntry] = []
    for ban in bans:
        left = ban.remaining(now)
        if left is None or left > 0:
            out.append(BanEntry(target(ban.address), ban.jail, left))
    return out


def key_entries(keys: Sequence[BanKey]) -> list[BanEntry]:
    """`unban`'s keys as entries (for an unban only address and jail matter)."""
    return [BanEntry(target(key.address), key.jail) for key in keys]


class Backend(Protocol):
    """Enforces bans in a firewall. Every method is one batched transaction: all or nothing.

    A failed call raises `BackendError` and leaves the firewall as it was. The daemon is the
    authority on which bans exist; a backend keeps no ban state of its own that the daemon
    cannot rebuild with `reconcile`. Bans come as ``banish.events.Ban``: the address is
    canonical text, the end is absolute (``banned_at + bantime``), and ``now`` turns it into
    the time left, so a ban applied late, or again after a restart, still ends when it should.
    """

    async def start(self, jails: Sequence[JailFirewall],
                    friends: Sequence[FriendsOnly] = ()) -> None:
        """Create (or atomically reshape) the firewall structure for ``jails`` and the
        friends-only services ``friends``.

        Bans of jails that remain are kept; jails no longer listed lose their bans. Called
        again whenever an allow list changes (a friend's host name resolved to a new address):
        the new allow entries are in place before the old ones go, in one transaction, so no
        packet of a friend is dropped in between. Never touches anything the backend did not
        create.
        """
        ...

    async def ban(self, bans: Sequence[Ban], now: float) -> None:
        """Ban every entry until its end; re-banning refreshes the time left. A ban already
        over at ``now`` is skipped."""
        ...

    async def unban(self, keys: Sequence[BanKey]) -> None:
        """Lift every ban; one that is not banned (or already expired) is no error."""
        ...

    async def reconcile(self, active: Sequence[Ban], now: float) -> None:
        """Make the firewall hold exactly ``active`` (for the started jails), repairing drift.

        Adds missing bans, removes extra ones, corrects time left that is off by more than
        a few seconds, and restores structure someone deleted by hand.
        """
        ...

    async def stop(self) -> None:
        """Remove everything the backend created (bans included) and nothing else."""
        ...
