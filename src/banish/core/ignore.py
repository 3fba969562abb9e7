"""Ignore lists: which addresses a jail must never ban.

Checked in fail2ban's order: the host's own addresses (``ignoreself``), ``ignoreip`` addresses
and networks, ``ignoreip`` host names (through their last resolved addresses), then the
``ignorecommand`` hook. Host names are resolved by the daemon, not here: it asks
``names_to_resolve(now)`` which names are due, resolves them however it likes, and reports back
with ``update_resolved``. Re-resolving every ``refresh`` seconds keeps a dynamic home address
allowed after it changes; a failed lookup keeps the last known addresses, because banning the
owner during a DNS hiccup is worse than trusting a stale address a little longer.

Owns: ``IgnoreList``, ``IgnorePredicate``, ``normalize_address``.
Must not: resolve names, run commands, read the clock.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from banish.core.events import IgnoreSource
from banish.events import Failure

if TYPE_CHECKING:
    from banish.config.model import IgnoreIP

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IgnorePredicate = Callable[[str, Failure | None], bool]
"""The ``ignorecommand`` hook: True means "ignore this address". The daemon supplies it (it
runs the command, with whatever caching it chooses); the failure is None when only an address
is checked, e.g. for a ban restored from the store."""

DEFAULT_REFRESH: Final = 300.0
"""Seconds between resolutions of an ``ignoreip`` host name (fail2ban caches DNS for 5 min)."""


def normalize_address(text: str) -> IPAddress | None:
    """The address in ``text``, with IPv4-mapped IPv6 turned into IPv4; None if not an address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


_V6_TAG: Final = 1 << 128  # keeps IPv4 and IPv6 values apart in one set of ints


def _address_key(text: str) -> int | None:
    """``text`` as one int (IPv6 tagged above 2**128), or None if it is not an address.

    ``inet_pton`` is several times faster than ``ipaddress`` and this runs for every failure;
    forms it does not take (a zone index such as ``fe80::1%eth0``) go the slow way.
    """
    try:
        if ":" not in text:
            return int.from_bytes(socket.inet_pton(socket.AF_INET, text))
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text))
    except OSError:
        ip = normalize_address(text)
        if ip is None:
            return None
        return int(ip) if ip.version == 4 else int(ip) | _V6_TAG
    if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d
        return value & 0xFFFFFFFF
    return value | _V6_TAG


def _ip_key(ip: IPAddress) -> int:
    return int(ip) if ip.version == 4 else int(ip) | _V6_TAG


def _key(name: str) -> str:
    return name.lower().rstrip(".")


class _NetworkSet:
    """Membership in a set of networks: one hash lookup per distinct prefix length."""

    def __init__(self) -> None:
        self._v4: dict[int, set[int]] = {}
        self._v6: dict[int, set[int]] = {}

    def add(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        table = self._v4 if network.version == 4 else self._v6
        table.setdefault(network.prefixlen, set()).add(int(network.network_address))

    def __contains__(self, key: int) -> bool:
        if key >= _V6_TAG:
            table, value, bits = self._v6, key ^ _V6_TAG, 128
        else:
            table, value, bits = self._v4, key, 32
        for prefixlen, nets in table.items():
            shift = bits - prefixlen
            if (value >> shift) << shift in nets:
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)


class IgnoreList:
    """The ignore rules of one jail; see the module docstring for order and DNS handling."""

    def __init__(
        self,
        ignoreip: IgnoreIP | None = None,
        *,
        ignoreself: bool = True,
        self_addresses: Iterable[str] = (),
        predicate: IgnorePredicate | None = None,
        refresh: float = DEFAULT_REFRESH,
    ) -> None:
        self.ignoreself = ignoreself
        self.predicate = predicate
        self.refresh = refresh
        self._networks = _NetworkSet()
        self._names: dict[str, frozenset[IPAddress]] = {}
        self._attempted: dict[str, float] = {}
        self._by_name: set[int] = set()
        self._self: frozenset[int] = frozenset()
        if ignoreip is not None:
            self.set_ignoreip(ignoreip)
        self.set_self_addresses(self_addresses)

    def set_ignoreip(self, ignoreip: IgnoreIP) -> None:
        """Replace the ``ignoreip`` entries (``banish set JAIL addignoreip``/``delignoreip``).

        Only this list changes: the jail's failure windows live elsewhere and stay, and a host
        name still listed keeps what it last resolved to (a new one is due a lookup at once).
        """
        networks = _NetworkSet()
        for net in ignoreip.networks:
            networks.add(net)
        self._networks = networks
        self._names = {(k := _key(name)): self._names.get(k, frozenset())
                       for name in ignoreip.names}
        self._attempted = {k: t for k, t in self._attempted.items() if k in self._names}
        self._index_names()

    def set_self_addresses(self, addresses: Iterable[str]) -> None:
        """Replace the host's own addresses (the daemon refreshes them when interfaces change)."""
        self._self = frozenset(k for a in addresses if (k := _address_key(a)) is not None)

    def names_to_resolve(self, now: float | None = None) -> tuple[str, ...]:
        """Host names in ``ignoreip``: all of them, or with ``now`` only those due a lookup."""
        if now is None:
            return tuple(self._names)
        return tuple(
            name
            for name in self._names
            if (last := self._attempted.get(name)) is None or now - last >= self.refresh
        )

    def update_resolved(self, name: str, addresses: Iterable[str] | None, now: float) -> None:
        """Record a lookup of ``name`` at ``now``: its addresses, or None if the lookup failed
        (then the previous addresses stay in force). Unknown names are ignored, so a result
        that arrives after a reload dropped the name does no harm."""
        key = _key(name)
        if key not in self._names:
            return
        self._attempted[key] = now
        if addresses is None:
            return
        self._names[key] = frozenset(
            ip for a in addresses if (ip := normalize_address(a)) is not None
        )
        self._index_names()

    def _index_names(self) -> None:
        """One set of every address the names stand for: a check is one lookup."""
        self._by_name = {_ip_key(ip) for ips in self._names.values() for ip in ips}

    @property
    def resolved(self) -> Mapping[str, frozenset[IPAddress]]:
        """The addresses each host name currently stands for (for status output)."""
        return dict(self._names)

    def check(self, address: str, failure: Failure | None = None) -> IgnoreSource | None:
        """Which rule ignores ``address``, or None if it may be banned.

        An identifier that is not an address (a user name used as failure id) can only be
        ignored by the predicate, as in fail2ban.
        """
        has_rules = (self.ignoreself and self._self) or self._networks or self._by_name
        key = _address_key(address) if has_rules else None
        if key is not None:
            if self.ignoreself and key in self._self:
                return IgnoreSource.SELF
            if key in self._networks:
                return IgnoreSource.IP
            if key in self._by_name:
                return IgnoreSource.DNS
        if self.predicate is not None and self.predicate(address, failure):
            return IgnoreSource.COMMAND
        return None
