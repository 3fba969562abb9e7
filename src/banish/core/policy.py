"""Ban time decisions: the jail's ``bantime``, grown by ``bantime.increment`` for repeat offenders.

With increment on and a positive bantime, an address banned ``n`` times before (``n`` > 0) gets:

* ``bantime * factor * multipliers[min(n, len - 1)]`` when ``bantime.multipliers`` is set, else
* ``max(bantime, formula)``, the default formula being ``bantime * 2**min(n, 20) * factor``;
* then at most ``bantime.maxtime``, then plus ``random() * bantime.rndtime``.

A first offender (``n`` = 0) gets exactly ``bantime``, and a permanent ban stays permanent, as in
fail2ban. Known offenders also weigh more while failing: each failure counts
``min(maxretry, 2**(n-1) + 1)`` times (fail2ban's observer does the same), so a returning
attacker is banned sooner.

The number of earlier bans comes from the caller (``prior_count``); the randomness from an
injected function, so tests are exact.

Owns: ``BanPolicy``, ``PriorBans``, ``PriorBansLookup``, ``MAX_BANTIME``.
Must not: query the store, read the clock, or evaluate user text other than through a
compiled ``Formula``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from banish.core.formula import FormulaError
from banish.events import PERMANENT

if TYPE_CHECKING:
    from banish.config.model import BantimeIncrement

MAX_BANTIME: Final = 2**31 - 1
"""Longest finite ban, in seconds (~68 years): a runaway formula is clamped to this."""

_MAX_DOUBLINGS: Final = 20


class PriorBans(Protocol):
    """What the store knows about an address's earlier bans (``store.base.BanCount`` fits)."""

    @property
    def count(self) -> int: ...

    @property
    def last_banned_at(self) -> float | None: ...


PriorBansLookup = Callable[[str, str | None], PriorBans | None]
"""``lookup(address, jail)``: earlier bans of ``address`` in ``jail``, or in all jails when
``jail`` is None (``bantime.overalljails``); None when it was never banned. Called once per
ban decision and, with increment on, once per failure, so it should answer from memory."""


def _system_random() -> Callable[[], float]:
    # The random part exists to make the end of a ban unpredictable, so take it from the OS.
    return random.SystemRandom().random


class BanPolicy:
    """Computes ban times for one jail; see the module docstring for the rules."""

    def __init__(
        self,
        bantime: float,
        increment: BantimeIncrement | None = None,
        *,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.bantime = bantime
        self.increment = increment
        self.rng = rng if rng is not None else _system_random()

    @property
    def permanent(self) -> bool:
        return self.bantime < 0

    @property
    def incremental(self) -> bool:
        """True when earlier bans change anything (increment on, bantime not permanent)."""
        return self.increment is not None and self.increment.increment and self.bantime > 0

    @property
    def max_bantime(self) -> float | None:
        """The longest ban this policy can give: None when unbounded (permanent, or increment
        without ``maxtime``). The store uses it to decide which restored bans still hold."""
        if self.permanent:
            return None
        if not self.incremental:
            return self.bantime
        assert self.increment is not None
        if self.increment.maxtime is None:
            return None
        return self.increment.maxtime + (self.increment.rndtime or 0.0)

    def retry_weight(self, prior_count: int, maxretry: int) -> int:
        """How many failures one failure of an address banned ``prior_count`` times counts as."""
        if not self.incremental or prior_count <= 0:
            return 1
        weight = (1 << min(prior_count, _MAX_DOUBLINGS)) // 2 + 1
        return min(weight, maxretry)

    def bantime_for(self, prior_count: int) -> int:
        """Seconds to ban an address banned ``prior_count`` times before; ``-1`` = permanent."""
        if self.permanent:
            return PERMANENT
        if not self.incremental or prior_count <= 0:
            return _clamp(self.bantime)
        inc = self.increment
        assert inc is not None
        base = self.bantime
        if inc.multipliers:
            mult = inc.multipliers[min(prior_count, len(inc.multipliers) - 1)]
            seconds = base * inc.factor * mult
        elif inc.formula is None:
            seconds = base * (1 << min(prior_count, _MAX_DOUBLINGS)) * inc.factor
            seconds = max(base, seconds)
        else:
            try:
                seconds = max(
                    base, inc.formula(ban_time=base, ban_count=prior_count, ban_factor=inc.factor)
                )
            except FormulaError:
                # The formula was proven at load time; if it still fails for some count, a
                # plain ban is better than none (fail2ban also falls back to bantime).
                seconds = base
        if inc.maxtime is not None:
            seconds = min(seconds, inc.maxtime)
        if inc.rndtime:
            seconds += self.rng() * inc.rndtime
        return _clamp(seconds)


def _clamp(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds >= MAX_BANTIME:
        return MAX_BANTIME
    return max(0, round(seconds))
