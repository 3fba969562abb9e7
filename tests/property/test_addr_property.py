"""The fast address parser agrees with ``ipaddress`` on every address and refuses the rest."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from banish.addr import canonical_address, parse_address


@given(st.ip_addresses())
def test_parse_equals_ipaddress(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    expected = address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        expected = address.ipv4_mapped
    for text in (str(address), address.exploded):
        assert parse_address(text) == expected
        assert canonical_address(text) == str(expected)


# Zero groups are where text forms differ (which run "::" replaces, a lone 0, the dotted IPv4
# tail some libraries print for ::a.b.c.d and ::ffff:0:a.b.c.d): draw groups mostly zero.
_GROUP = st.one_of(st.just(0), st.just(0), st.integers(0, 0xFFFF), st.sampled_from([1, 0xFFFF]))


@given(st.lists(_GROUP, min_size=8, max_size=8))
def test_canonical_ipv6_with_zero_runs_equals_ipaddress(groups: list[int]) -> None:
    number = int.from_bytes(b"".join(g.to_bytes(2, "big") for g in groups), "big")
    address = ipaddress.IPv6Address(number)
    expected = address.ipv4_mapped or address
    for text in (str(address), address.exploded):
        assert canonical_address(text) == str(expected)


@given(st.text(max_size=40))
def test_garbage_is_refused_like_ipaddress(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        assert parse_address(text) is None
        assert canonical_address(text) is None


def test_edge_spellings() -> None:
    for text in ("1.2.3.04", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", " 1.2.3.4", "1::2::3",
                 "2001:db8::1/64", ""):
        try:
            expected: object = ipaddress.ip_address(text)
        except ValueError:
            expected = None
        assert parse_address(text) == expected, text
    assert canonical_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert canonical_address("2001:DB8::0:1") == "2001:db8::1"
    assert canonical_address("192.0.2.7/24") == "192.0.2.0/24"
    assert canonical_address("::ffff:192.0.2.0/120") == "192.0.2.0/24"
    # inet_ntop's dotted forms must not leak out: ipaddress spells these in hex groups.
    assert canonical_address("::192.0.2.1") == "::c000:201"
    assert canonical_address("::ffff:0:192.0.2.1") == "::ffff:0:c000:201"
    assert canonical_address("1:0:1:1:1:1:1:1") == "1:0:1:1:1:1:1:1"
    assert canonical_address("1:0:0:1:0:0:1:1") == "1::1:0:0:1:1"
