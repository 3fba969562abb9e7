"""One jail's decision logic: failures in, ban decisions out.

``feed(failure, now)`` runs a failure through, in order: the staleness check (a failure older
than ``findtime`` at ``now`` is skipped, a future one is treated as happening ``now``), the
ignore lists, the failure window, and on reaching ``maxretry`` the ban policy. It never blocks,
never reads the clock and never does I/O: earlier bans, DNS answers, the host's addresses and
the ``ignorecommand`` verdict all come in through arguments and hooks.

Owns: ``Jail``, ``JailStats``.
Must not: apply bans, talk to the store or the network, or keep state that a daemon restart
needs (windows are deliberately volatile, as in fail2ban).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from banish.core.events import FeedResult, IgnoreSource, Outcome
from banish.core.ignore import DEFAULT_REFRESH, IgnoreList, IgnorePredicate, IPAddress
from banish.core.policy import BanPolicy, PriorBansLookup
from banish.core.tracker import FailureTracker
from banish.events import BanDecision, Failure

if TYPE_CHECKING:
    from banish.config.model import JailSettings

_STALE: Final = FeedResult(Outcome.STALE)
_NO_FIELDS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class JailStats:
    """Counters for ``banish status`` (fail2ban's "Currently failed / Total failed / ...")."""

    currently_failed: int
    total_failed: int
    total_banned: int
    total_ignored: int
    evicted: int
    """Addresses dropped from tracking because ``max_tracked`` was reached."""


class Jail:
    """Failure tracking, ignore rules and ban policy of one jail, as one pure object.

    ``prior_bans`` answers how often an address was banned before (the daemon backs it with the
    store); without it every ban is a first ban. ``ignore_predicate`` is the ``ignorecommand``
    hook. ``rng`` supplies the ``bantime.rndtime`` randomness (inject a seeded one in tests).
    ``max_tracked`` and ``max_match_chars`` bound the tracker's memory (see ``core.tracker``).
    """

    def __init__(
        self,
        settings: JailSettings,
        *,
        prior_bans: PriorBansLookup | None = None,
        self_addresses: Iterable[str] = (),
        ignore_predicate: IgnorePredicate | None = None,
        rng: Callable[[], float] | None = None,
        max_tracked: int | None = None,
        max_match_chars: int | None = None,
        resolve_interval: float = DEFAULT_REFRESH,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.prior_bans = prior_bans
        self.tracker = FailureTracker(
            maxretry=settings.maxretry,
            findtime=settings.findtime,
            maxmatches=settings.matches_kept,
            max_tracked=settings.maxtracked if max_tracked is None else max_tracked,
            max_match_chars=(settings.maxmatchchars if max_match_chars is None
                             else max_match_chars),
        )
        self.policy = BanPolicy(settings.bantime, settings.bantime_increment, rng=rng)
        self.ignores = IgnoreList(
            settings.ignoreip,
            ignoreself=settings.ignoreself,
            self_addresses=self_addresses,
            predicate=ignore_predicate,
            refresh=resolve_interval,
        )
        self.total_failed = 0
        self.total_banned = 0
        self.total_ignored = 0

    def feed(self, failure: Failure, now: float) -> FeedResult:
        """Account one failure found at ``now``; see the module docstring for the steps."""
        settings = self.settings
        time = failure.time if failure.time <= now else now
        if time < now - settings.findtime:
            return _STALE
        address = failure.fid
        source = self.ignores.check(address, failure)
        if source is not None:
            self.total_ignored += 1
            return FeedResult(Outcome.IGNORED, ignored_by=source)

        weight = 1
        if self.prior_bans is not None and self.policy.incremental:
            # fail2ban looks at this jail's record only here, even with overalljails, and
            # does not weigh a failure logged before the last ban (a re-read log line).
            prior = self.prior_bans(address, self.name)
            if prior is not None and prior.count > 0:
                last = prior.last_banned_at
                if last is None or time > last:
                    weight = self.policy.retry_weight(prior.count, settings.maxretry)

        self.total_failed += 1
        tally = self.tracker.add(address, time, failure.lines, weight)
        if tally.matches is None:
            return FeedResult(Outcome.COUNTED, tally.failures)
        decision = self.decide(
            address,
            tally.latest,
            failures=tally.failures,
            matches=tally.matches,
            fields=failure.fields,
        )
        end = decision.end
        if end is not None and end < now:
            return FeedResult(Outcome.EXPIRED, tally.failures)
        self.total_banned += 1
        return FeedResult(Outcome.BANNED, tally.failures, decision)

    def decide(
        self,
        address: str,
        time: float,
        *,
        failures: int = 0,
        matches: tuple[str, ...] = (),
        fields: Mapping[str, str] | None = None,
    ) -> BanDecision:
        """The ban ``address`` gets if banned at ``time`` (also for manual ``banish ban``)."""
        prior = None
        if self.prior_bans is not None:
            overall = self.policy.incremental and self.settings.bantime_increment.overalljails
            prior = self.prior_bans(address, None if overall else self.name)
        count = prior.count if prior is not None and prior.count > 0 else 0
        return BanDecision(
            address=address,
            jail=self.name,
            time=time,
            bantime=self.policy.bantime_for(count),
            failures=failures,
            matches=matches,
            ban_count=count + 1,
            fields=MappingProxyType(dict(fields)) if fields else _NO_FIELDS,
        )

    def ignored_by(self, address: str, failure: Failure | None = None) -> IgnoreSource | None:
        """Which ignore rule covers ``address`` (e.g. before restoring a ban), or None."""
        return self.ignores.check(address, failure)

    def names_to_resolve(self, now: float | None = None) -> tuple[str, ...]:
        """``ignoreip`` host names the daemon should resolve: all, or those due at ``now``."""
        return self.ignores.names_to_resolve(now)

    def update_resolved(self, name: str, addresses: Iterable[str] | None, now: float) -> None:
        """Report a lookup of an ``ignoreip`` name; None means it failed (keep the old ones)."""
        self.ignores.update_resolved(name, addresses, now)

    def set_self_addresses(self, addresses: Iterable[str]) -> None:
        self.ignores.set_self_addresses(addresses)

    @property
    def resolved(self) -> Mapping[str, frozenset[IPAddress]]:
        return self.ignores.resolved

    def expire(self, now: float) -> int:
        """Drop failure windows that can no longer lead to a ban; returns how many."""
        return self.tracker.expire(now)

    def forget(self, address: str) -> bool:
        """Drop the failures counted for ``address`` (after a manual ban or an unban)."""
        return self.tracker.forget(address)

    def stats(self) -> JailStats:
        """A snapshot of the counters (a new object each call)."""
        return JailStats(
            currently_failed=len(self.tracker),
            total_failed=self.total_failed,
            total_banned=self.total_banned,
            total_ignored=self.total_ignored,
            evicted=self.tracker.evicted,
        )
