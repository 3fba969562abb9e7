"""A jail end to end: failures in, ban decisions out; time is only ever a number passed in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from banish.config.model import PERMANENT, BantimeIncrement, JailSettings
from banish.config.values import jail_settings, parse_ignoreip
from banish.core import FeedResult, IgnoreSource, Jail, JailStats, Outcome
from banish.events import BanDecision, Failure


def fail(address: str, time: float, line: str = "", **fields: str) -> Failure:
    return Failure(address, time, 0, (line or f"fail {address} at {time}",), fields=fields)


@dataclass(frozen=True)
class Prior:
    count: int
    last_banned_at: float | None


class History:
    """Stands in for the store: remembers decisions, answers like ``Store.ban_count``."""

    def __init__(self) -> None:
        self.bans: list[BanDecision] = []
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, address: str, jail: str | None) -> Prior | None:
        self.calls.append((address, jail))
        mine = [b for b in self.bans if b.address == address and jail in (None, b.jail)]
        if not mine:
            return None
        return Prior(len(mine), max(b.time for b in mine))


def test_three_failures_ban_with_all_details() -> None:
    jail = Jail(JailSettings("sshd", maxretry=3, findtime=600, bantime=3600))
    a = "203.0.113.5"
    assert jail.feed(fail(a, 100), now=100) == FeedResult(Outcome.COUNTED, 1)
    assert jail.feed(fail(a, 160), now=160) == FeedResult(Outcome.COUNTED, 2)
    result = jail.feed(fail(a, 200, "the third", user="root"), now=201)
    assert result.outcome is Outcome.BANNED and result.failures == 3
    d = result.decision
    assert d == BanDecision(
        address=a,
        jail="sshd",
        time=200,
        bantime=3600,
        failures=3,
        matches=(f"fail {a} at 100", f"fail {a} at 160", "the third"),
        ban_count=1,
    )
    assert d is not None and d.fields == {"user": "root"} and d.end == 3800 and not d.permanent
    assert jail.stats() == JailStats(
        currently_failed=0, total_failed=3, total_banned=1, total_ignored=0, evicted=0
    )
    # after the ban the count starts over
    assert jail.feed(fail(a, 210), now=210).failures == 1


def test_default_maxmatches_is_maxretry() -> None:
    jail = Jail(jail_settings("j", {"maxretry": "2"}))
    jail.feed(fail("a", 1, "one"), 1)
    d = jail.feed(fail("a", 2, "two"), 2).decision
    assert d is not None and d.matches == ("one", "two")
    capped = Jail(jail_settings("j", {"maxretry": "3", "maxmatches": "1"}))
    for t in (1, 2):
        capped.feed(fail("a", t, f"l{t}"), t)
    d = capped.feed(fail("a", 3, "l3"), 3).decision
    assert d is not None and d.matches == ("l3",)


def test_stale_and_future_failures() -> None:
    jail = Jail(JailSettings("j", maxretry=2, findtime=60))
    assert jail.feed(fail("a", 39), now=100).outcome is Outcome.STALE
    assert jail.stats().total_failed == 0 and jail.stats().currently_failed == 0
    assert jail.feed(fail("a", 40), now=100).outcome is Outcome.COUNTED  # exactly findtime old
    result = jail.feed(fail("a", 5000), now=100)  # clock skew: treated as happening now
    assert result.decision is not None and result.decision.time == 100


def test_ban_already_over_is_expired_not_banned() -> None:
    jail = Jail(JailSettings("j", maxretry=2, findtime=600, bantime=60))
    jail.feed(fail("a", 0), now=0)
    result = jail.feed(fail("a", 10), now=71)  # the ban would have ended at 70
    assert result == FeedResult(Outcome.EXPIRED, 2)
    assert jail.stats().total_banned == 0
    assert jail.feed(fail("a", 11), now=71).failures == 1  # the window was still consumed


def test_permanent_ban() -> None:
    jail = Jail(JailSettings("j", maxretry=1, bantime=PERMANENT))
    result = jail.feed(fail("a", 0), now=10**9)
    assert result.outcome is Outcome.STALE
    d = jail.feed(fail("a", 10**9), now=10**9).decision
    assert d is not None and d.bantime == -1 and d.permanent and d.end is None


def test_ignored_addresses_never_count() -> None:
    settings = JailSettings("j", maxretry=1, ignoreip=parse_ignoreip("10.0.0.0/8 home.example.org"))
    jail = Jail(settings, self_addresses=["192.0.2.1"], ignore_predicate=lambda a, f: a == "bob")
    jail.update_resolved("home.example.org", ["198.51.100.9"], now=0)
    for address, source in [
        ("10.1.2.3", IgnoreSource.IP),
        ("192.0.2.1", IgnoreSource.SELF),
        ("198.51.100.9", IgnoreSource.DNS),
        ("bob", IgnoreSource.COMMAND),
    ]:
        assert jail.feed(fail(address, 5), now=5) == FeedResult(Outcome.IGNORED, ignored_by=source)
        assert jail.ignored_by(address) is source
    assert jail.stats().total_ignored == 4 and jail.stats().total_failed == 0
    assert jail.feed(fail("203.0.113.1", 5), now=5).outcome is Outcome.BANNED
    jail.set_self_addresses([])
    assert jail.feed(fail("192.0.2.1", 6), now=6).outcome is Outcome.BANNED


def test_dns_names_flow_through_the_jail() -> None:
    jail = Jail(jail_settings("j", {"ignoreip": "home.example.org"}), resolve_interval=120)
    assert jail.names_to_resolve() == ("home.example.org",)
    assert jail.names_to_resolve(now=0) == ("home.example.org",)
    jail.update_resolved("home.example.org", ["198.51.100.9"], now=0)
    assert jail.names_to_resolve(now=60) == ()
    assert jail.names_to_resolve(now=120) == ("home.example.org",)
    assert set(map(str, jail.resolved["home.example.org"])) == {"198.51.100.9"}


def increment_jail(history: History, **inc: object) -> Jail:
    settings = JailSettings(
        "sshd",
        maxretry=3,
        findtime=600,
        bantime=600,
        bantime_increment=BantimeIncrement(increment=True, **inc),  # type: ignore[arg-type]
    )
    return Jail(settings, prior_bans=history, rng=lambda: 0.0)


def ban_until(jail: Jail, history: History, address: str, start: float) -> tuple[BanDecision, int]:
    """Feed failures one second apart until a ban; return it and how many failures it took."""
    for n in range(1, 20):
        result = jail.feed(fail(address, start + n), now=start + n)
        if result.decision is not None:
            history.bans.append(result.decision)
            return result.decision, n
    raise AssertionError("never banned")


def test_bantime_increment_grows_and_repeat_offenders_are_banned_sooner() -> None:
    history = History()
    jail = increment_jail(history)
    a = "203.0.113.5"
    seen = []
    for start in (0, 10_000, 20_000, 30_000, 40_000):
        d, took = ban_until(jail, history, a, start)
        seen.append((d.bantime, d.ban_count, took))
    # 600 * 2**n; failures weigh 1, 2, 3, 5 (capped at maxretry 3) -> 3, 2, 1, 1 failures
    assert seen == [(600, 1, 3), (1200, 2, 2), (2400, 3, 1), (4800, 4, 1), (9600, 5, 1)]


def test_failures_logged_before_the_last_ban_do_not_weigh_more() -> None:
    history = History()
    jail = increment_jail(history)
    history.bans.append(BanDecision("a", "sshd", 1000, 600, 3))
    assert jail.feed(fail("a", 990), now=1000).failures == 1  # re-read line from before the ban
    assert jail.feed(fail("a", 1001), now=1001).failures == 3  # weight 2 after it -> ban
    assert jail.stats().total_banned == 1


def test_overalljails_counts_bans_in_every_jail_for_the_time_only() -> None:
    history = History()
    history.bans += [BanDecision("a", "other", 0, 600, 3), BanDecision("a", "web", 0, 600, 3)]
    jail = increment_jail(history, overalljails=True)
    for t in (100, 101):
        assert jail.feed(fail("a", t), now=t).outcome is Outcome.COUNTED
    d = jail.feed(fail("a", 102), now=102).decision
    assert d is not None and (d.bantime, d.ban_count) == (2400, 3)
    # the failure weight looks at this jail only (fail2ban does the same)
    assert ("a", "sshd") in history.calls and history.calls[-1] == ("a", None)

    per_jail = increment_jail(History())
    assert per_jail.decide("a", 0).bantime == 600


def test_without_increment_history_only_numbers_the_ban() -> None:
    history = History()
    history.bans.append(BanDecision("a", "j", 0, 600, 3))
    jail = Jail(JailSettings("j", maxretry=2, bantime=600), prior_bans=history)
    jail.feed(fail("a", 100), now=100)
    d = jail.feed(fail("a", 101), now=101).decision
    assert d is not None and (d.bantime, d.ban_count, d.failures) == (600, 2, 2)


def test_manual_decision_and_forget() -> None:
    jail = Jail(JailSettings("j", maxretry=3, bantime=60))
    jail.feed(fail("a", 1), now=1)
    assert jail.forget("a") and not jail.forget("a")
    d = jail.decide("198.51.100.1", 50)
    assert (d.address, d.jail, d.time, d.bantime, d.failures, d.matches) == (
        "198.51.100.1",
        "j",
        50,
        60,
        0,
        (),
    )


def test_expire_frees_windows() -> None:
    jail = Jail(JailSettings("j", maxretry=3, findtime=60))
    for i in range(10):
        jail.feed(fail(f"10.0.0.{i}", i), now=i)
    assert jail.stats().currently_failed == 10
    assert jail.expire(now=65) == 5  # 0..4 are gone; 5 is exactly findtime old
    assert jail.stats().currently_failed == 5


def test_spray_of_distinct_addresses_stays_bounded() -> None:
    jail = Jail(JailSettings("j", maxretry=5), max_tracked=1000, max_match_chars=20_000)
    for i in range(20_000):
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        result = jail.feed(fail(address, i * 0.001), now=i * 0.001)
        assert result.outcome is Outcome.COUNTED
    stats = jail.stats()
    assert stats.currently_failed <= 1000
    assert stats.evicted >= 19_000
    assert stats.total_failed == 20_000
    assert jail.tracker.match_chars <= 20_000


@pytest.mark.parametrize("bad", [0, -1])
def test_tracker_cap_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        Jail(JailSettings("j"), max_tracked=bad)
