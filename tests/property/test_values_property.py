"""Properties of option parsing: durations add up, garbage is rejected cleanly, never crashes."""

from __future__ import annotations

import ipaddress
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banish.config.values import (
    UNITS,
    parse_bool,
    parse_duration,
    parse_factor,
    parse_formula,
    parse_ignoreip,
    parse_multipliers,
)
from banish.errors import ConfigError


def random_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))


@st.composite
def durations(draw: st.DrawFn) -> tuple[str, float]:
    """Text like ``1h 30m``, ``2 days+3h``, ``1d12h`` and the seconds it stands for."""
    parts = draw(
        st.lists(
            st.tuples(
                st.one_of(st.integers(0, 10_000).map(str), st.sampled_from(["0.5", "1.25"])),
                st.sampled_from(sorted(UNITS)),
                st.sampled_from(["", " "]),
                st.sampled_from([" ", "  ", " + ", "+", "\t", ""]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    text, total = "", 0.0
    for i, (number, unit, gap, sep) in enumerate(parts):
        if i:
            text += sep
        text += number + gap + random_case(draw, unit)
        total += float(number) * UNITS[unit]
    return text, total


@given(durations())
def test_quantities_side_by_side_add_up(case: tuple[str, float]) -> None:
    text, seconds = case
    assert parse_duration(text, "bantime") == pytest.approx(seconds)


@given(durations(), durations())
def test_explicit_minus(a: tuple[str, float], b: tuple[str, float]) -> None:
    assert parse_duration(f"{a[0]} - ({b[0]})", "x") == pytest.approx(a[1] - b[1], abs=1e-6)


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_plain_seconds(seconds: float) -> None:
    text = f"{seconds:.6f}"
    assert parse_duration(text, "findtime") == float(text)
    assert parse_duration(str(int(seconds)), "findtime") == int(seconds)


@settings(max_examples=500)
@given(st.text(alphabet="0123456789.+-*/() hdmswyoneaHD_x;'\"e", max_size=30))
def test_any_text_is_a_number_or_a_config_error(text: str) -> None:
    try:
        value = parse_duration(text, "findtime")
    except ConfigError as e:
        assert str(e).startswith("findtime: invalid duration")
    else:
        assert math.isfinite(value)


@settings(max_examples=200)
@given(st.text(alphabet="0123456789abcdefx.:/[], \n\t-_%é", max_size=40))
def test_ignoreip_garbage_is_rejected_cleanly(text: str) -> None:
    try:
        parsed = parse_ignoreip(text)
    except ConfigError as e:
        assert e.where.option == "ignoreip"
    else:
        assert all(
            isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network) for n in parsed.networks
        )


networks = st.one_of(
    st.builds(
        lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, p: ipaddress.IPv6Network((a, p), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    ).filter(lambda n: n.network_address.ipv4_mapped is None),
)


@given(st.lists(networks, max_size=6), st.sampled_from([" ", ",", "\n", ", "]))
def test_networks_round_trip(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network], sep: str
) -> None:
    parsed = parse_ignoreip(sep.join(str(n) for n in nets))
    assert parsed.networks == tuple(dict.fromkeys(nets))
    assert parsed.names == ()


@given(st.sampled_from(["1", "yes", "true", "on", "0", "no", "false", "off"]), st.data())
def test_bool_spellings_any_case(word: str, data: st.DataObject) -> None:
    flipped = "".join(c.upper() if data.draw(st.booleans()) else c for c in word)
    assert parse_bool(f" {flipped} ", "enabled") is (word in ("1", "yes", "true", "on"))


@settings(max_examples=500)
@given(
    st.text(
        alphabet="banTimeCoutFcr.()*+-/<>=!% 0123456789ifelsmaxnpgqrtwh_'[]{}:,@~^|&", max_size=40
    )
)
def test_formula_text_never_escapes(text: str) -> None:
    """Whatever the text, parsing ends in a Formula or a ConfigError naming the option."""
    try:
        formula = parse_formula(text)
    except ConfigError as e:
        assert e.where.option == "bantime.formula"
    else:
        try:
            value = formula(ban_time=600, ban_count=3, ban_factor=1.5)
        except ValueError:  # FormulaError is a ValueError
            return
        assert math.isfinite(value)


leaves = st.one_of(
    st.integers(-3, 40).map(str),
    st.sampled_from(["ban.Time", "ban.Count", "banFactor", "banTime", "banCount", "0.5", "math.e"]),
)


def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(
        children,
        st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "<", "=="]),
        children,
    ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    calls = st.tuples(
        st.sampled_from(["min", "max", "math.pow", "math.log"]), children, children
    ).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")
    single = st.tuples(
        st.sampled_from(["abs", "float", "int", "round", "math.exp", "math.sqrt", "-"]), children
    ).map(lambda t: f"{t[0]}({t[1]})")
    ternary = st.tuples(children, children, children).map(
        lambda t: f"({t[0]} if {t[1]} else {t[2]})"
    )
    return st.one_of(binary, calls, single, ternary)


@settings(max_examples=400)
@given(st.recursive(leaves, combine, max_leaves=12), st.integers(0, 30), st.floats(0.1, 10))
def test_well_formed_formulas_evaluate_or_fail_cleanly(
    text: str, count: int, factor: float
) -> None:
    """Any expression of the accepted language either evaluates to a finite number or raises
    FormulaError (overflow, division by zero, math domain): never another exception."""
    try:
        formula = parse_formula(text)
    except ConfigError as e:
        assert e.where.option == "bantime.formula"
        return
    try:
        value = formula(ban_time=600, ban_count=count, ban_factor=factor)
    except ValueError:
        return
    assert math.isfinite(value)


@given(st.text(alphabet="0123456789.+-*/() e", max_size=20))
def test_factor_is_a_number_or_an_error(text: str) -> None:
    try:
        value = parse_factor(text)
    except ConfigError as e:
        assert e.where.option == "bantime.factor"
    else:
        assert math.isfinite(value)


@given(st.lists(st.integers(0, 10**6), max_size=10))
def test_multipliers_round_trip(numbers: list[int]) -> None:
    assert parse_multipliers(" ".join(map(str, numbers))) == tuple(numbers)
