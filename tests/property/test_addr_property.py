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


@given(st.text(max_size=40))
def test_garbage_is_refused_like_ipaddress(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        assert parse_address(text) is None


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
