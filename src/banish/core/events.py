"""The events the core hands to the daemon: a ban decision, and what happened to each failure.

These may move into ``banish.events`` once the daemon consumes them; they live here so the core
can be written without touching the shared vocabulary module.

Owns: ``BanDecision``, ``FeedResult``, ``Outcome``, ``IgnoreSource``, ``PERMANENT_BAN``.
Must not: import anything from the daemon, the store or the config reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final

PERMANENT_BAN: Final = -1
"""``BanDecision.bantime`` of a ban that never ends."""

_NO_FIELDS: Final[Mapping[str, str]] = MappingProxyType({})


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
    fields: Mapping[str, str] = field(default_factory=lambda: _NO_FIELDS, compare=False, hash=False)

    @property
    def permanent(self) -> bool:
        return self.bantime < 0

    @property
    def end(self) -> float | None:
        """When the ban ends, or None for a permanent one."""
        return None if self.bantime < 0 else self.time + self.bantime


class IgnoreSource(StrEnum):
    """Which rule let an address through; worded as fail2ban logs it ("Ignore X by ip")."""

    SELF = "ignoreself rule"
    IP = "ip"
    DNS = "dns"
    COMMAND = "command"


class Outcome(Enum):
    """What ``Jail.feed`` did with one failure."""

    COUNTED = "counted"  # tracked; below maxretry
    BANNED = "banned"  # reached maxretry; ``decision`` is set
    IGNORED = "ignored"  # the address is on an ignore list; ``ignored_by`` is set
    STALE = "stale"  # older than findtime at ``now``: fail2ban skips these too
    EXPIRED = "expired"  # reached maxretry, but the ban would already be over at ``now``


@dataclass(frozen=True, slots=True)
class FeedResult:
    """The verdict on one failure, with enough detail for the daemon's log line."""

    outcome: Outcome
    failures: int = 0
    decision: BanDecision | None = None
    ignored_by: IgnoreSource | None = None
