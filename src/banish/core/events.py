"""The core's verdict on each failure (``BanDecision`` itself is shared: ``banish.events``).

Owns: ``FeedResult``, ``Outcome``, ``IgnoreSource``.
Must not: import anything from the daemon, the store or the config reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from banish.events import BanDecision


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
