"""One jail's whole pure path: log bytes and ``now`` in; failures, verdicts and bans out.

Owns the glue between the stages -- filter (with its prefilter) -> ``core.Jail`` -> ban target
(IPv6 prefix widening) -> subnet escalation -- and the rule that failures of an address already
banned in the jail (by itself or inside a banned network) are not counted again. The daemon and
``banish scan`` both drive exactly this; they differ only in where ``now`` comes from (the clock,
or the log's own times in a replay) and in what they do with the bans (the enforcer, or a
report). Must not do I/O, read the clock or await: the daemon runs the asynchronous hooks
(DNS for host names, ``ignorecommand``) between `failures` and `judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from .config.loader import JailConfig
from .core.active import ActiveBans
from .core.events import FeedResult, Outcome
from .core.ignore import IgnorePredicate
from .core.jail import Jail
from .core.policy import PriorBansLookup
from .core.subnets import ban_target, escalation
from .events import Ban, BanDecision, Failure, LogLine
from .match.chunks import ChunkMatcher, Prescanned
from .match.dates import DateDetector
from .match.filter import CompiledFilter

__all__ = ["Pipeline", "Verdict"]

_SKIPPED = FeedResult(Outcome.COUNTED)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one failure did: the core's result, and the bans it made -- the ban of its
    address (widened by ``banprefix6``) and, when that completes one, the escalated subnet.

    ``already_banned`` failures were not counted: the address is banned in this jail already
    (a log read again, or lines logged while the ban was being applied).
    """

    result: FeedResult
    bans: tuple[Ban, ...] = ()
    already_banned: bool = False


class Pipeline:
    """Filter, core and ban targeting of one jail, compiled once from its ``JailConfig``.

    ``journal`` compiles the jail's journal form of the filter (lines without dates, the
    journal's time). ``prior_bans``, ``self_addresses``, ``ignore_predicate`` and ``rng`` are the
    core's hooks (see ``core.Jail``). Raises ConfigError for a regex or time zone that cannot
    be compiled, naming the option.
    """

    def __init__(self, jail: JailConfig, *, journal: bool = False,
                 prior_bans: PriorBansLookup | None = None, self_addresses: Iterable[str] = (),
                 ignore_predicate: IgnorePredicate | None = None,
                 rng: Callable[[], float] | None = None) -> None:
        self.config = jail
        self.name = jail.name
        definition = jail.journal_filter if journal and jail.journal_filter else jail.filter
        self.journal = journal or definition.logtype == "journal"
        self.filter = CompiledFilter(definition, logtimezone=jail.logtimezone)
        self.matcher = ChunkMatcher(self.filter)
        self.dates = self.filter.dates if self.filter.dates.disabled else (
            DateDetector.from_pattern(definition.datepattern, logtimezone=jail.logtimezone)
            if definition.datepattern else DateDetector.auto(logtimezone=jail.logtimezone))
        self.core = Jail(jail.settings, prior_bans=prior_bans, self_addresses=self_addresses,
                         ignore_predicate=ignore_predicate, rng=rng)

    # -- match stage ------------------------------------------------------------------------

    def failures(self, chunk: bytes, now: float, found: Prescanned | None = None
                 ) -> Iterator[Failure]:
        """The failures in a whole-line chunk; ``now`` places dates without a year and stamps
        failures without a date."""
        for outcome in self.matcher.feed(chunk, now, found):
            hit = outcome.result.failure
            if hit is not None and hit.fid is not None:
                yield hit.to_failure(now)

    def failures_of_lines(self, lines: Sequence[LogLine], now: float) -> list[Failure]:
        """The failures in lines a source read; journal lines carry their own time."""
        if not lines:
            return []
        if lines[0].time is None and not self.filter.journal:
            chunk = "\n".join(line.text for line in lines).encode("utf-8", "replace") + b"\n"
            return list(self.failures(chunk, now))
        found: list[Failure] = []
        for line in lines:
            hit = self.filter.process(line.text, now, time=line.time).failure
            if hit is not None and hit.fid is not None:
                found.append(hit.to_failure(now))
        return found

    def date_of(self, line: str, now: float) -> float | None:
        """The time a line was logged, as the filter reads it (for seeking into big files)."""
        hit = self.dates.find(line, now)
        return None if hit is None else hit.time

    # -- core stage -------------------------------------------------------------------------

    def judge(self, failure: Failure, now: float, book: ActiveBans) -> Verdict:
        """Count one failure of an address (``failure.fid`` must be an address by now).

        The bans it makes are added to ``book`` at once, so the failures after it see them:
        the daemon passes a book over its active bans for each batch, ``banish scan`` its
        replayed bans.
        """
        if book.is_banned(failure.fid, self.name):
            return Verdict(_SKIPPED, already_banned=True)
        result = self.core.feed(failure, now)
        decision = result.decision
        if decision is None:
            return Verdict(result)
        ban = self.ban_of(decision, failure)
        book.add([ban])
        subnet = self.escalation(ban, book, now)
        if subnet is None:
            return Verdict(result, (ban,))
        book.add([subnet])
        return Verdict(result, (ban, subnet))

    def ban_of(self, decision: BanDecision, failure: Failure | None = None) -> Ban:
        """The ban a decision makes: its target widened by ``banprefix6``, its details kept."""
        target = ban_target(decision.address, self.config.subnets)
        fid = failure.fid if failure is not None else decision.address
        return Ban(target, self.name, decision.time, int(decision.bantime), decision.failures,
                   tuple(decision.matches), "", decision.ban_count, decision.fields,
                   fid if fid != target else None)

    def escalation(self, ban: Ban, book: ActiveBans, now: float) -> Ban | None:
        """The whole subnet to ban because enough of its addresses now are (``escalate``),
        for the jail's bantime from ``now``; ``book`` already holds ``ban``."""
        policy = self.config.subnets
        if not policy.escalates:
            return None
        banned = [(b.address, b.banned_at) for b in book.banned_in(self.name)]
        subnet = escalation(ban.address, banned, policy, now)
        if subnet is None:
            return None
        return Ban(subnet, self.name, now, int(self.config.settings.bantime), fid=ban.address)
