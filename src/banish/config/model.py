"""banish's typed configuration model: what one jail is, after every value has been checked.

The config reader turns text into these frozen values once; the core and the daemon only ever
see them, never option strings. Constructing a model value validates its ranges, so a model
that exists is a model that works. Reload builds new values and compares them (``==``).

Owns: ``JailSettings``, ``BantimeIncrement``, ``IgnoreIP``, ``LogPath``, ``UseDns``, and
``JailFirewall`` (what a firewall backend must know of a jail).
Must not: read files, parse option text (that is ``config.values``), or hold mutable state.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from typing import Final, Literal, TypeAlias, get_args

from banish.addr import as_network
from banish.core.formula import Formula
from banish.core.tracker import DEFAULT_MAX_MATCH_CHARS as DEFAULT_MAX_MATCH_CHARS
from banish.core.tracker import DEFAULT_MAX_TRACKED as DEFAULT_MAX_TRACKED
from banish.errors import ConfigError

IPNetwork = IPv4Network | IPv6Network

PERMANENT: Final = -1.0
"""``bantime`` of a ban that never ends (fail2ban's ``-1``)."""

DEFAULT_MAXRETRY: Final = 5
DEFAULT_FINDTIME: Final = 600.0
DEFAULT_BANTIME: Final = 600.0



class UseDns(StrEnum):
    """Whether a failure's host name may be resolved to an address (fail2ban ``usedns``)."""

    YES = "yes"
    WARN = "warn"
    NO = "no"
    RAW = "raw"


@dataclass(frozen=True, slots=True)
class LogPath:
    """One ``logpath`` line: a path or glob, and whether to start at its end (``tail``).

    Globs are kept as written; expanding them is I/O and belongs to the daemon's file source.
    """

    path: str
    tail: bool = False


@dataclass(frozen=True, slots=True)
class IgnoreIP:
    """The ``ignoreip`` list, split into what can be matched now and what needs DNS.

    Single addresses are stored as /32 or /128 networks. IPv4-mapped IPv6 entries are stored
    as IPv4, so that ``::ffff:10.0.0.1`` and ``10.0.0.1`` mean the same host.
    """

    networks: tuple[IPNetwork, ...] = ()
    names: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.networks or self.names)


def _bad(option: str, reason: str) -> ConfigError:
    return ConfigError(reason, option=option)


@dataclass(frozen=True, slots=True)
class BantimeIncrement:
    """The ``bantime.*`` options: how a repeat offender's ban grows.

    ``formula`` None means the built-in default, ``bantime * 2**min(count, 20) * factor``.
    ``multipliers``, when given, replace the formula (fail2ban's rule). ``maxtime`` caps the
    result; ``rndtime`` adds up to that many random seconds so a botnet cannot compute the
    exact end of a ban.
    """

    increment: bool = False
    factor: float = 1.0
    formula: Formula | None = None
    multipliers: tuple[float, ...] = ()
    maxtime: float | None = None
    rndtime: float | None = None
    overalljails: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.factor):
            raise _bad("bantime.factor", f"must be a finite number, got {self.factor!r}")
        for m in self.multipliers:
            if not math.isfinite(m) or m < 0:
                raise _bad("bantime.multipliers", f"must be numbers >= 0, got {m!r}")
        if self.maxtime is not None and not (math.isfinite(self.maxtime) and self.maxtime > 0):
            raise _bad("bantime.maxtime", f"must be a positive duration, got {self.maxtime!r}")
        if self.rndtime is not None and not (math.isfinite(self.rndtime) and self.rndtime >= 0):
            raise _bad("bantime.rndtime", f"must be a duration >= 0, got {self.rndtime!r}")


@dataclass(frozen=True, slots=True)
class JailSettings:
    """Everything the core needs to know about one jail, plus what its source and matcher need.

    ``maxmatches`` None means "as many as ``maxretry``" (jail.conf's default); read
    ``matches_kept`` for the effective number. ``ignorecommand`` is only carried here: the
    daemon runs it and hands the core a predicate.
    """

    name: str
    enabled: bool = False
    filter: str = ""
    logpath: tuple[LogPath, ...] = ()
    backend: str = "auto"
    maxretry: int = DEFAULT_MAXRETRY
    findtime: float = DEFAULT_FINDTIME
    bantime: float = DEFAULT_BANTIME
    maxmatches: int | None = None
    ignoreip: IgnoreIP = field(default_factory=IgnoreIP)
    ignoreself: bool = True
    ignorecommand: str = ""
    usedns: UseDns = UseDns.WARN
    mode: str = "normal"
    bantime_increment: BantimeIncrement = field(default_factory=BantimeIncrement)
    maxtracked: int = DEFAULT_MAX_TRACKED
    """Addresses whose failures are counted at once; beyond, the longest quiet go first."""
    maxmatchchars: int = DEFAULT_MAX_MATCH_CHARS
    """Characters of matched lines kept over all addresses (their failures still count)."""
    fleet: str = "off"
    """share: this jail's bans go to the fleet; receive: the fleet's bans of the jail of this
    name are applied here; both; off (a node without a fleet ignores it)."""
    fleetmaxretry: int | None = None
    """Failures of one address reported by all nodes within findtime that ban it everywhere."""

    @property
    def shares(self) -> bool:
        return self.fleet in ("share", "both")

    @property
    def receives(self) -> bool:
        return self.fleet in ("receive", "both")

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ConfigError(f"invalid jail name {self.name!r}")
        where = self.name
        if self.maxretry < 1:
            raise ConfigError(
                f"must be at least 1, got {self.maxretry}", section=where, option="maxretry"
            )
        if not (math.isfinite(self.findtime) and self.findtime > 0):
            raise ConfigError(
                f"must be a positive duration, got {self.findtime!r}",
                section=where,
                option="findtime",
            )
        if not (self.bantime == PERMANENT or (math.isfinite(self.bantime) and self.bantime > 0)):
            raise ConfigError(
                f"must be a positive duration or -1 (permanent), got {self.bantime!r}",
                section=where,
                option="bantime",
            )
        if self.maxmatches is not None and self.maxmatches < 0:
            raise ConfigError(
                f"must be 0 or more, got {self.maxmatches}", section=where, option="maxmatches"
            )

    @property
    def matches_kept(self) -> int:
        """How many matched lines a ban carries (``maxmatches``, defaulting to ``maxretry``)."""
        return self.maxretry if self.maxmatches is None else self.maxmatches

    @property
    def permanent(self) -> bool:
        return self.bantime == PERMANENT


Transport: TypeAlias = Literal["tcp", "udp", "sctp", "udplite", "all"]
Blocktype: TypeAlias = Literal["drop", "reject"]
Port: TypeAlias = int | tuple[int, int]
"""One port, or an inclusive (first, last) range."""

_JAIL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


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
    allow: tuple[IPNetwork, ...] = ()
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


@dataclass(frozen=True, slots=True)
class FriendsOnly:
    """A service only friends may reach: the firewall drops every packet to ``ports`` (of
    ``protocol``) whose source is not in ``friends`` -- the friends' current addresses, IPv4
    and IPv6 (host names already resolved by the daemon). Built by the daemon for the
    backend from a ``[friends-only NAME]`` section; ``name`` is NAME."""

    name: str
    ports: tuple[Port, ...]
    protocol: Transport = "tcp"
    friends: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        if not _JAIL_NAME.fullmatch(self.name):
            raise ConfigError("a friends-only name must be 1-64 characters of letters, digits, "
                              "'_', '.', '-'", section=f"friends-only {self.name}")
        if not self.ports:
            raise ConfigError("name the ports friends-only applies to (all ports would cut off "
                              "everything else)", section=f"friends-only {self.name}",
                              option="port")
        object.__setattr__(self, "friends", tuple(as_network(a) for a in self.friends))
