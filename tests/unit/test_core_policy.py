"""Ban time decisions, including every bantime.increment option."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from banish.config.model import PERMANENT, BantimeIncrement
from banish.config.values import parse_formula
from banish.core.policy import MAX_BANTIME, BanPolicy


def policy(bantime: float = 600, rng: float = 0.5, **inc: object) -> BanPolicy:
    increment = BantimeIncrement(increment=True, **inc)  # type: ignore[arg-type]
    return BanPolicy(bantime, increment, rng=lambda: rng)


# (bantime.* options, prior ban count, expected seconds) with bantime = 600
CASES = [
    ({}, 0, 600),
    ({}, 1, 1200),
    ({}, 2, 2400),
    ({}, 3, 4800),
    ({}, 20, 600 * 2**20),
    ({}, 40, 600 * 2**20),  # the default formula stops doubling after 20
    ({"factor": 2.0}, 1, 2400),
    ({"factor": 0.25}, 1, 600),  # never shorter than bantime with a formula
    ({"multipliers": (1, 2, 4, 8, 16, 32, 64)}, 1, 1200),
    ({"multipliers": (1, 2, 4, 8, 16, 32, 64)}, 6, 600 * 64),
    ({"multipliers": (1, 2, 4, 8, 16, 32, 64)}, 99, 600 * 64),
    ({"multipliers": (1, 5, 30), "factor": 2.0}, 1, 6000),
    ({"multipliers": (1, 0.5)}, 1, 300),  # multipliers may shorten, as in fail2ban
    ({"maxtime": 3000.0}, 3, 3000),
    ({"maxtime": 3000.0}, 1, 1200),
    ({"rndtime": 100.0}, 1, 1250),  # rng() = 0.5
    ({"rndtime": 100.0}, 0, 600),  # a first offender gets exactly bantime
    ({"maxtime": 3000.0, "rndtime": 100.0}, 5, 3050),  # random part added after the cap
    ({"formula": parse_formula("ban.Time + ban.Count * 60 * banFactor")}, 2, 720),
    ({"formula": parse_formula("ban.Time / 2")}, 2, 600),  # max(bantime, formula)
    ({"formula": parse_formula("ban.Time * 2"), "multipliers": (1, 3)}, 1, 1800),  # multipliers win
    ({"formula": parse_formula("ban.Time / (ban.Count - 2)")}, 2, 600),  # error -> bantime
    ({"formula": parse_formula("ban.Time ** ban.Count")}, 9, MAX_BANTIME),  # clamped
]


@pytest.mark.parametrize(("options", "count", "expected"), CASES)
def test_increment(options: dict[str, Any], count: int, expected: int) -> None:
    assert policy(**options).bantime_for(count) == expected


def test_increment_off_or_permanent() -> None:
    assert BanPolicy(600).bantime_for(5) == 600
    assert BanPolicy(600, BantimeIncrement(increment=False, factor=3)).bantime_for(5) == 600
    assert policy(bantime=PERMANENT).bantime_for(0) == -1
    assert policy(bantime=PERMANENT).bantime_for(3) == -1
    assert not policy(bantime=PERMANENT).incremental
    assert BanPolicy(90.4).bantime_for(0) == 90


@pytest.mark.parametrize(
    ("count", "maxretry", "weight"),
    [(0, 5, 1), (1, 5, 2), (2, 5, 3), (3, 5, 5), (4, 5, 5), (4, 20, 9), (30, 10**7, 2**19 + 1)],
)
def test_known_offenders_weigh_more(count: int, maxretry: int, weight: int) -> None:
    assert policy().retry_weight(count, maxretry) == weight
    assert BanPolicy(600).retry_weight(count, maxretry) == 1


def test_max_bantime() -> None:
    assert BanPolicy(600).max_bantime == 600
    assert policy().max_bantime is None
    assert policy(maxtime=3600.0, rndtime=60.0).max_bantime == 3660
    assert BanPolicy(PERMANENT).max_bantime is None


def test_random_part_is_injectable_and_seeded() -> None:
    a = BanPolicy(
        600, BantimeIncrement(increment=True, rndtime=1000.0), rng=random.Random(7).random
    )
    b = BanPolicy(
        600, BantimeIncrement(increment=True, rndtime=1000.0), rng=random.Random(7).random
    )
    seq_a = [a.bantime_for(1) for _ in range(5)]
    assert seq_a == [b.bantime_for(1) for _ in range(5)]
    assert len(set(seq_a)) > 1
    assert all(1200 <= s <= 2200 for s in seq_a)


def test_default_randomness_stays_in_range() -> None:
    p = BanPolicy(600, BantimeIncrement(increment=True, rndtime=10.0))
    assert all(1200 <= p.bantime_for(1) <= 1210 for _ in range(50))


@given(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=0, max_value=60),
    st.floats(min_value=0.01, max_value=100),
    st.one_of(st.none(), st.integers(min_value=1, max_value=10**8)),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_default_formula_properties(
    bantime: int, count: int, factor: float, maxtime: int | None, r: float
) -> None:
    p = policy(bantime, rng=r, factor=factor, maxtime=None if maxtime is None else float(maxtime))
    t = p.bantime_for(count)
    assert 0 <= t <= MAX_BANTIME
    if maxtime is not None:
        assert t <= max(maxtime, bantime if count == 0 else 0) + 1
    if count > 0 and (maxtime is None or maxtime >= bantime):
        assert t >= bantime - 1
    # growing: a repeat offender never gets less than the one before (without a cap below)
    if maxtime is None:
        assert p.bantime_for(count + 1) >= t
