"""The typed events that cross pipeline stages, and the ONE vocabulary of a ban.

sources -> ``LogLine`` -> match -> ``Failure`` -> core -> ``BanDecision`` -> pipeline -> ``Ban``
-> enforcer (store + firewall) -> ``BanEvent`` -> subscribers.

A ban has exactly these shapes: the core's ``BanDecision`` (about the address that failed),
the ``Ban`` the pipeline makes of it (about the target the firewall blocks: the address, or the
network it was widened to), and the ``BanKey`` that names an active ban. Everything after the
core -- store, firewall backends, action.d scripts, the event stream -- takes a ``Ban``.

Owns: ``LogLine``, ``Failure``, ``BanDecision``, ``Ban``, ``BanKey``, ``PERMANENT``,
``BanEvent``, ``EventKind``. Must not hold behaviour beyond derived properties, or import any
other banish module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final, NamedTuple

PERMANENT: Final = -1
"""``bantime`` of a ban that never ends (fail2ban's ``-1``); any negative bantime means the
same."""

NO_FIELDS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line read by a source.

    ``time`` is set only when the source knows it (the journal); otherwise the matcher finds the
    date inside ``text``.
    """

    text: str
    source: str = ""
    time: float | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure the matcher found: who (``fid``, usually an address), when, and why."""

    fid: str
    time: float
    regex_index: int
    lines: tuple[str, ...] = ()
    user: str | None = None
    fields: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class BanDecision:
    """The core decided that ``address`` is banned in ``jail`` from ``time`` for ``bantime`` s.

    ``time`` is the time of the latest failure in the window (the one that reached maxretry,
    when logs arrive in order), so the ban lasts ``bantime`` from the attack, not from when
    banish got round to reading it. ``ban_count`` counts this ban: 1 for a first offender.
    ``fields`` are the extra named groups of the triggering failure (for action tags).
    """

    address: str
    jail: str
    time: float
    bantime: int
    failures: int
    matches: tuple[str, ...] = ()
    ban_count: int = 1
    fields: Mapping[str, str] = field(default_factory=lambda: NO_FIELDS, compare=False,
                                      hash=False)

    @property
    def permanent(self) -> bool:
        return self.bantime < 0

    @property
    def end(self) -> float | None:
        """When the ban ends, or None for a permanent one."""
        return None if self.bantime < 0 else self.time + self.bantime


# Ban and BanKey are NamedTuples rather than frozen dataclasses: equally immutable, but built
# and hashed in C, three times faster; a bulk load makes 100,000 of each.


class BanKey(NamedTuple):
    """Names an active ban: one target is banned at most once per jail."""

    address: str
    jail: str


class Ban(NamedTuple):
    """One ban of one target in one jail: what is recorded, enforced and published.

    ``address`` is canonical text (``banish.addr``): a host without ``/len``, IPv4-mapped IPv6
    as IPv4, or a network with its host bits clear; the store and the firewall compare it as a
    string. The ban lasts from ``banned_at`` for ``bantime`` seconds (``PERMANENT``: forever),
    so its end is absolute and the same wherever it is applied.
    ``failures``, ``matches``, ``ban_count``, ``fields`` (the failure's named captures under
    fail2ban's names: ``user``, ``fid``...) and ``fid`` (what the log named, when the target
    differs: a widened subnet, a resolved host name) are what action tags and reports show;
    bans restored from the store carry only what the store keeps. ``origin`` names who decided
    the ban when it was not this host's own log ("" this host; "fail2ban" for an import;
    another node's name for a fleet ban).
    """

    address: str
    jail: str
    banned_at: float
    bantime: int
    failures: int = 0
    matches: tuple[str, ...] = ()
    origin: str = ""
    ban_count: int = 1
    fields: Mapping[str, str] = NO_FIELDS
    fid: str | None = None

    @property
    def permanent(self) -> bool:
        return self.bantime < 0

    @property
    def expires_at(self) -> float | None:
        """When the ban ends, or None for a permanent one."""
        return None if self.bantime < 0 else self.banned_at + self.bantime

    @property
    def key(self) -> BanKey:
        return BanKey(self.address, self.jail)

    def remaining(self, now: float) -> float | None:
        """Seconds left at ``now`` (0 once over), or None for a permanent ban. A firewall
        timeout set from this ends the ban at its original end, whenever it is applied."""
        if self.bantime < 0:
            return None
        return max(0.0, self.banned_at + self.bantime - now)


class EventKind(StrEnum):
    """What happened to the bans of a `BanEvent`."""

    BAN = "ban"
    """New bans, recorded and applied."""
    RESTORE = "restore"
    """Bans re-applied from the store at start (fail2ban's ``restored`` tickets)."""
    UNBAN = "unban"
    """Bans lifted before their end: by hand, or because their jail was removed."""
    EXPIRE = "expire"
    """Bans whose time was over."""
    RELOAD = "reload"
    """The configuration changed; ``jails`` are the jails running now. Carries no bans."""


@dataclass(frozen=True, slots=True)
class BanEvent:
    """One change to the set of active bans, published once the store and the firewall hold it.

    A batch of bans of one kind is one event (a 100,000-address bulk load is one event, not
    100,000), in the order the changes were made, so a subscriber sees each address's bans and
    unbans in order. ``reason`` says why an unban happened ("jail removed", "manual").
    """

    kind: EventKind
    time: float
    bans: tuple[Ban, ...] = ()
    reason: str = ""
    jails: tuple[str, ...] = ()
