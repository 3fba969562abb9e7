"""The firewall backend contract: what the daemon hands to whatever enforces its bans.

Owns the `Backend` protocol (five batched, async methods), the frozen values it takes
(`BanEntry`, `JailFirewall`) and `BackendError`. Must not run commands, read the clock or know
about any particular firewall: `nftables.py`, `null.py` (ipset and iptables too) supply that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal, Protocol, TypeAlias, get_args, runtime_checkable

from banish.errors import BanishError, ConfigError

Network: TypeAlias = IPv4Network | IPv6Network
Address: TypeAlias = IPv4Address | IPv6Address | Network
"""A single address or a CIDR network; a host is the same as its /32 or /128 network."""

Transport: TypeAlias = Literal["tcp", "udp", "sctp", "udplite", "all"]
Blocktype: TypeAlias = Literal["drop", "reject"]
Port: TypeAlias = int | tuple[int, int]
"""One port, or an inclusive (first, last) range."""

_JAIL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class BackendError(BanishError):
    """The firewall refused a change or could not be read; nothing of that call was applied.

    Every backend call is one transaction, so after this error the firewall is as it was
    before the call and the daemon may retry, or call `Backend.reconcile` to repair it.
    """


def as_network(address: Address) -> Network:
    """The network an address stands for, with IPv4-mapped IPv6 turned into plain IPv4.

    Mapping matters: a dual-stack server logs ``::ffff:192.0.2.1`` for a client whose packets
    the kernel sees as IPv4, so banning the IPv6 spelling would block nothing.
    """
    return _network(_canonical(address))


@dataclass(frozen=True, slots=True)
class BanEntry:
    """One address or network banned in one jail.

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


@dataclass(frozen=True, slots=True)
class JailFirewall:
    """What the firewall needs to know about one jail, resolved by the config layer.

    ``ports`` are numbers (the config layer resolves service names like ``ssh``); an empty
    tuple means every port of ``protocol``, and ``protocol="all"`` with no ports blocks the
    address completely. ``allow`` (the jail's ignoreip) is checked before any ban of this jail,
    so an allowed address stays reachable even inside a banned network. ``forward`` also
    filters forwarded traffic (containers behind Docker's NAT); there the ports are matched
    against the port the client originally connected to, before DNAT.
    """

    name: str
    ports: tuple[Port, ...] = ()
    protocol: Transport = "tcp"
    blocktype: Blocktype = "reject"
    allow: tuple[Address, ...] = ()
    forward: bool = False

    def __post_init__(self) -> None:
        if not _JAIL_NAME.fullmatch(self.name):
            raise ConfigError(
                "jail name must be 1-64 characters of letters, digits, '_', '.', '-' "
                "(starting with a letter, digit or '_') to name firewall sets",
                section=self.name,
            )
        if self.protocol not in get_args(Transport):
            raise ConfigError(
                f"protocol {self.protocol!r} is not one of {', '.join(get_args(Transport))}",
                section=self.name,
                option="protocol",
            )
        if self.blocktype not in get_args(Blocktype):
            raise ConfigError(
                f"blocktype {self.blocktype!r} is not one of {', '.join(get_args(Blocktype))}",
                section=self.name,
                option="blocktype",
            )
        for port in self.ports:
            first, last = port if isinstance(port, tuple) else (port, port)
            if not (0 < first <= last <= 65535):
                raise ConfigError(
                    f"port {port!r} is not a port number 1-65535 or a (first, last) range",
                    section=self.name,
                    option="port",
                )
        object.__setattr__(self, "allow", tuple(as_network(a) for a in self.allow))


def jails_by_name(jails: Sequence[JailFirewall]) -> dict[str, JailFirewall]:
    """``start``'s argument by name; two jails of one name are a caller's bug."""
    by_name = {j.name: j for j in jails}
    if len(by_name) != len(jails):
        raise ValueError("two jails share a name")
    return by_name


@runtime_checkable
class TextBans(Protocol):
    """A backend that also takes one jail's bans as canonical address text, skipping the
    address objects: at 100,000 bans, building and taking apart ``BanEntry`` objects costs
    more than the kernel's whole transaction. The enforcer uses it for backends that need no
    `BanDetails`; the result must be that of ``ban`` with the equivalent entries."""

    async def ban_texts(self, jail: str, bans: Sequence[tuple[str, float | None]]) -> None:
        """Ban each (text, seconds left or None for permanent). Texts are as ``banish.addr``
        writes them: a host without ``/len``, IPv4-mapped IPv6 already IPv4, a network with
        its host bits clear."""
        ...


class Backend(Protocol):
    """Enforces bans in a firewall. Every method is one batched transaction: all or nothing.

    A failed call raises `BackendError` and leaves the firewall as it was. The daemon is the
    authority on which bans exist; a backend keeps no ban state of its own that the daemon
    cannot rebuild with `reconcile`.
    """

    uses_details: bool
    """Whether `ban` reads the `BanDetails` an entry may carry (action.d tags such as
    <failures> or <F-USER>). Native backends say False, so a bulk load of 100,000 bans does
    not build 100,000 detail objects nobody reads."""

    async def start(self, jails: Sequence[JailFirewall]) -> None:
        """Create (or, on reload, atomically reshape) the firewall structure for ``jails``.

        Bans of jails that remain are kept; jails no longer listed lose their bans. Never
        touches anything the backend did not create.
        """
        ...

    async def ban(self, bans: Sequence[BanEntry]) -> None:
        """Ban every entry for its ``expires_in``; re-banning refreshes the time left."""
        ...

    async def unban(self, bans: Sequence[BanEntry]) -> None:
        """Lift every entry; an entry that is not banned (or already expired) is no error."""
        ...

    async def reconcile(self, active: Sequence[BanEntry]) -> None:
        """Make the firewall hold exactly ``active`` (for the started jails), repairing drift.

        Adds missing bans, removes extra ones, corrects time left that is off by more than
        a few seconds, and restores structure someone deleted by hand.
        """
        ...

    async def stop(self) -> None:
        """Remove everything the backend created (bans included) and nothing else."""
        ...
