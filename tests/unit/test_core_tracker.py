"""Failure windows: counting within findtime, reset after a ban, and bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banish.core.tracker import FailureTracker, Tally


def tracker(
    maxretry: int = 3, findtime: float = 10, maxmatches: int = 3, **kw: int
) -> FailureTracker:
    return FailureTracker(maxretry=maxretry, findtime=findtime, maxmatches=maxmatches, **kw)


# (time, expected count after the failure, banned?) for one address, maxretry 3, findtime 10
WINDOW_CASES = {
    "three quick failures ban": [(0, 1, False), (1, 2, False), (2, 3, True)],
    "count restarts after a ban": [(0, 1, False), (1, 2, False), (2, 3, True), (3, 1, False)],
    "old failures drop out": [(0, 1, False), (5, 2, False), (16, 1, False), (17, 2, False)],
    "exactly findtime old still counts": [(0, 1, False), (5, 2, False), (10, 3, True)],
    "just over findtime does not": [(0, 1, False), (5, 2, False), (10.5, 2, False)],
    # fail2ban's rate estimate would ban at 11 (round(2/11*10)+1 = 3); the exact window does not
    "exact window, not a rate estimate": [
        (0, 1, False),
        (5, 2, False),
        (11, 2, False),
        (12, 3, True),
    ],
    "out of order within window counts": [(10, 1, False), (5, 2, False), (8, 3, True)],
    "too late to count": [(20, 1, False), (5, 1, False), (21, 2, False)],
    "late but in window after newer": [(20, 1, False), (30, 2, False), (19, 2, False)],
    "same second": [(7, 1, False), (7, 2, False), (7, 3, True)],
}


@pytest.mark.parametrize("steps", list(WINDOW_CASES.values()), ids=list(WINDOW_CASES))
def test_window(steps: list[tuple[float, int, bool]]) -> None:
    t = tracker()
    for time, count, banned in steps:
        tally = t.add("192.0.2.1", time, (f"line {time}",))
        assert (tally.failures, tally.matches is not None) == (count, banned), time
        assert t.count("192.0.2.1") == (0 if banned else count)


def test_ban_returns_latest_time_and_matches_and_forgets() -> None:
    t = tracker(maxretry=3, maxmatches=2)
    t.add("a", 5, ("l1",))
    t.add("a", 9, ("l2a", "l2b"))
    tally = t.add("a", 7, ("l3",))
    assert tally == Tally(3, 9.0, ("l2b", "l3"))
    assert "a" not in t and len(t) == 0 and t.match_chars == 0


def test_addresses_are_independent() -> None:
    t = tracker(maxretry=2)
    assert t.add("a", 0).matches is None
    assert t.add("b", 0).matches is None
    assert t.add("a", 1).matches == ()
    assert t.count("b") == 1 and t.count("a") == 0


def test_maxmatches_caps_lines_and_zero_keeps_none() -> None:
    t = tracker(maxretry=5, maxmatches=2)
    for i in range(4):
        t.add("a", i, (f"l{i}",))
    assert t.matches("a") == ("l2", "l3")
    assert t.add("a", 4, ("l4",)).matches == ("l3", "l4")
    none = tracker(maxretry=2, maxmatches=0)
    none.add("a", 0, ("x",))
    assert none.matches("a") == () and none.match_chars == 0
    assert none.add("a", 1, ("y",)).matches == ()


def test_lines_of_an_expired_window_are_dropped() -> None:
    t = tracker(maxretry=3, findtime=10)
    t.add("a", 0, ("old",))
    t.add("a", 20, ("new",))
    assert t.matches("a") == ("new",)
    assert t.match_chars == 3


def test_weight_counts_one_failure_several_times() -> None:
    t = tracker(maxretry=5)
    assert t.add("a", 0, weight=3) == Tally(3, 0.0, None)
    assert t.count("a") == 3
    assert t.add("a", 1, ("x",), weight=2) == Tally(5, 1.0, ("x",))
    # a weight reaching maxretry at once bans without storing anything
    assert t.add("b", 0, ("y",), weight=9) == Tally(9, 0.0, ("y",))
    assert "b" not in t


def test_expire_drops_dead_windows() -> None:
    t = tracker(findtime=10)
    t.add("a", 0, ("x",))
    t.add("b", 5, ("y",))
    t.add("c", 9)
    assert t.expire(10) == 0  # "a" is exactly findtime old: still alive
    assert t.expire(15.5) == 2
    assert list(t._windows) == ["c"]
    assert t.match_chars == 0
    assert t.expire(100) == 1 and len(t) == 0


def test_expire_stops_at_first_live_window_in_update_order() -> None:
    t = tracker(findtime=10)
    t.add("a", 0)
    t.add("b", 50)
    t.add("c", 1)  # logged late, out of time order
    assert t.expire(30) == 1  # "a" only; "c" waits behind the live "b"
    assert "c" in t
    assert t.add("c", 40).failures == 1  # yet it can no longer count


def test_forget() -> None:
    t = tracker()
    t.add("a", 0, ("x",))
    assert t.forget("a") and not t.forget("a")
    assert t.match_chars == 0 and t.count("a") == 0


def test_cap_evicts_least_recently_failing_addresses_in_batches() -> None:
    t = tracker(maxretry=3, max_tracked=64)
    for i in range(64):
        t.add(f"10.0.0.{i}", i)
    t.add("10.0.0.0", 100)  # refreshed: now the most recent
    t.add("new", 101)
    assert len(t) == 64 - 64 // 16 + 1
    assert t.evicted == 4
    assert "10.0.0.0" in t and "new" in t
    assert all(f"10.0.0.{i}" not in t for i in range(1, 5))
    assert "10.0.0.5" in t


def test_million_style_spray_stays_bounded() -> None:
    """Scaled down 1M-address spray: the cap and the line budget both hold throughout.

    Measured at full scale with 1M distinct addresses failing once each (scratch script, CPython
    3.11): 200 MB total RSS with the default 32 Mi-char line budget, 137 MB with maxmatches=0.
    """
    cap, budget = 2_000, 50_000
    t = tracker(maxretry=5, maxmatches=5, max_tracked=cap, max_match_chars=budget)
    for i in range(30_000):
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        t.add(address, i * 0.01, (f"sshd[{i}]: Failed password for root from {address} port 22",))
        assert len(t) <= cap
        assert t.match_chars <= budget
    assert t.evicted >= 28_000
    assert t.trimmed > 0
    last = "10.0.117.47"  # i = 29999
    assert t.count(last) == 1 and t.matches(last) != ()


def test_line_budget_trims_oldest_lines_but_keeps_counting() -> None:
    t = tracker(maxretry=3, maxmatches=3, max_match_chars=32)
    for i in range(8):
        t.add(f"a{i}", i, ("0123456789",))  # 10 chars each
    assert t.match_chars <= 32
    assert t.matches("a0") == () and t.matches("a7") == ("0123456789",)
    assert t.count("a0") == 1
    assert t.add("a0", 8, ("x",)).matches is None
    assert t.add("a0", 9, ("y",)).matches == ("x", "y")


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        FailureTracker(maxretry=0, findtime=10, maxmatches=1)
    with pytest.raises(ValueError):
        FailureTracker(maxretry=1, findtime=0, maxmatches=1)


# --- property: the compact representation agrees with a naive model ------------------------

events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(events, st.integers(min_value=1, max_value=5), st.integers(min_value=1, max_value=20))
def test_agrees_with_naive_model(
    evs: list[tuple[str, int, int]], maxretry: int, findtime: int
) -> None:
    """Model: every failure since the last ban is remembered; the count is how many of them
    lie within findtime of the newest. A ban happens exactly when that reaches maxretry."""
    t = FailureTracker(maxretry=maxretry, findtime=findtime, maxmatches=maxretry)
    history: dict[str, list[int]] = {}
    for n, (address, time, weight) in enumerate(evs):
        h = history.setdefault(address, [])
        h.extend([time] * weight)
        newest = max(h)
        # a late failure (older than findtime before the newest) is in the model's history
        # but outside the window, so it never counts, exactly like in the tracker
        expected = sum(1 for x in h if x >= newest - findtime)
        tally = t.add(address, time, (f"{n}",), weight)
        assert tally.failures == expected
        assert tally.latest == newest
        if expected >= maxretry:
            assert tally.matches is not None
            assert tally.matches[-1] == f"{n}"  # the failure that reached maxretry is last
            assert len(tally.matches) <= maxretry
            history[address] = []
        else:
            assert tally.matches is None
            assert t.count(address) == expected
    assert len(t) == sum(1 for h in history.values() if h)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60), st.integers(1, 10)
)
def test_in_order_failures_keep_the_last_lines(times: list[int], maxmatches: int) -> None:
    """With failures in time order and all within findtime, a ban carries exactly the lines
    of the last ``maxmatches`` failures since the previous ban."""
    times.sort()
    maxretry = 4
    t = FailureTracker(maxretry=maxretry, findtime=10_000, maxmatches=maxmatches)
    since_ban: list[str] = []
    for n, time in enumerate(times):
        since_ban.append(f"l{n}")
        tally = t.add("x", time, (f"l{n}",))
        if tally.matches is not None:
            assert list(tally.matches) == since_ban[-maxmatches:]
            since_ban = []
