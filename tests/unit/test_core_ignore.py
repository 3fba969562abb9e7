"""Ignore lists: ignoreself, ignoreip addresses/networks/host names, and the command hook."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banish.config.values import parse_ignoreip
from banish.core.events import IgnoreSource
from banish.core.ignore import IgnoreList, _address_key, _ip_key, normalize_address
from banish.events import Failure

IGNOREIP = "127.0.0.1/8 ::1 192.0.2.7 10.20.0.0/16 2001:db8:abcd::/48 home.example.org"

CASES = [
    ("127.0.0.1", IgnoreSource.IP),
    ("127.255.3.4", IgnoreSource.IP),
    ("::1", IgnoreSource.IP),
    ("192.0.2.7", IgnoreSource.IP),
    ("192.0.2.8", None),
    ("10.20.255.255", IgnoreSource.IP),
    ("10.21.0.0", None),
    ("2001:db8:abcd:1::5", IgnoreSource.IP),
    ("2001:db8:abce::5", None),
    ("::ffff:10.20.1.1", IgnoreSource.IP),  # IPv4-mapped is the IPv4 host
    ("::ffff:8.8.8.8", None),
    ("203.0.113.9", None),
    ("home.example.org", None),  # a failure id that is not an address is not in any network
    ("root", None),
]


@pytest.mark.parametrize(("address", "source"), CASES)
def test_ignoreip(address: str, source: IgnoreSource | None) -> None:
    ignores = IgnoreList(parse_ignoreip(IGNOREIP), ignoreself=False)
    assert ignores.check(address) is source


def test_ignoreself_uses_the_given_host_addresses() -> None:
    ignores = IgnoreList(ignoreself=True, self_addresses=["198.51.100.4", "2001:db8::4", "junk"])
    assert ignores.check("198.51.100.4") is IgnoreSource.SELF
    assert ignores.check("2001:db8:0::4") is IgnoreSource.SELF
    assert ignores.check("198.51.100.5") is None
    ignores.set_self_addresses(["198.51.100.5"])  # the host's address changed
    assert ignores.check("198.51.100.4") is None
    assert ignores.check("198.51.100.5") is IgnoreSource.SELF
    off = IgnoreList(ignoreself=False, self_addresses=["198.51.100.4"])
    assert off.check("198.51.100.4") is None


def test_order_self_ip_dns_command() -> None:
    calls: list[str] = []

    def command(address: str, failure: Failure | None) -> bool:
        calls.append(address)
        return address.startswith("203.") or address == "alice"

    ignores = IgnoreList(
        parse_ignoreip("192.0.2.0/24 home.example.org"),
        self_addresses=["192.0.2.1"],
        predicate=command,
    )
    ignores.update_resolved("home.example.org", ["192.0.2.2", "198.51.100.77"], now=0)
    assert ignores.check("192.0.2.1") is IgnoreSource.SELF
    assert ignores.check("192.0.2.2") is IgnoreSource.IP
    assert ignores.check("198.51.100.77") is IgnoreSource.DNS
    assert calls == []
    failure = Failure("203.0.113.1", 5.0, 0, ("x",))
    assert ignores.check("203.0.113.1", failure) is IgnoreSource.COMMAND
    assert ignores.check("alice") is IgnoreSource.COMMAND  # non-address ids reach the hook
    assert ignores.check("198.51.100.1") is None
    assert calls == ["203.0.113.1", "alice", "198.51.100.1"]


def test_command_hook_gets_the_failure() -> None:
    seen: list[Failure | None] = []

    def command(address: str, failure: Failure | None) -> bool:
        seen.append(failure)
        return False

    ignores = IgnoreList(predicate=command)
    failure = Failure("203.0.113.1", 5.0, 0, ("x",), user="bob")
    assert ignores.check("203.0.113.1", failure) is None
    assert seen == [failure]


def test_names_are_resolved_by_the_caller_and_refreshed() -> None:
    ignores = IgnoreList(parse_ignoreip("Home.Example.org. office.example.net"), refresh=300)
    assert ignores.names_to_resolve() == ("home.example.org", "office.example.net")
    assert ignores.names_to_resolve(now=0) == ("home.example.org", "office.example.net")
    ignores.update_resolved("HOME.example.org.", ["198.51.100.1", "2001:db8::1"], now=0)
    assert ignores.names_to_resolve(now=1) == ("office.example.net",)
    assert ignores.check("198.51.100.1") is IgnoreSource.DNS
    assert ignores.check("2001:db8::1") is IgnoreSource.DNS
    assert ignores.names_to_resolve(now=299) == ("office.example.net",)
    assert ignores.names_to_resolve(now=300) == ("home.example.org", "office.example.net")
    # the dynamic address moved: the old one is no longer trusted, the new one is
    ignores.update_resolved("home.example.org", ["198.51.100.2"], now=300)
    assert ignores.check("198.51.100.1") is None
    assert ignores.check("198.51.100.2") is IgnoreSource.DNS
    assert ignores.resolved["home.example.org"] == frozenset({ipaddress.ip_address("198.51.100.2")})


def test_failed_lookup_keeps_last_known_addresses() -> None:
    ignores = IgnoreList(parse_ignoreip("home.example.org"), refresh=60)
    ignores.update_resolved("home.example.org", ["198.51.100.1"], now=0)
    ignores.update_resolved("home.example.org", None, now=60)
    assert ignores.check("198.51.100.1") is IgnoreSource.DNS
    assert ignores.names_to_resolve(now=100) == ()  # the failed attempt counts as an attempt
    ignores.update_resolved("home.example.org", [], now=120)  # resolved to nothing at all
    assert ignores.check("198.51.100.1") is None


def test_answers_for_unknown_names_are_ignored() -> None:
    ignores = IgnoreList(parse_ignoreip("home.example.org"))
    ignores.update_resolved("evil.example.com", ["0.0.0.0"], now=0)
    assert ignores.check("0.0.0.0") is None
    assert "evil.example.com" not in ignores.resolved


def test_normalize_address() -> None:
    assert normalize_address("::ffff:1.2.3.4") == ipaddress.ip_address("1.2.3.4")
    assert normalize_address("2001:DB8::1") == ipaddress.ip_address("2001:db8::1")
    assert normalize_address("1.2.3") is None
    assert normalize_address("host") is None


v4_nets = st.builds(
    lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
v6_nets = st.builds(
    lambda a, p: ipaddress.IPv6Network((a, p), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)


@settings(max_examples=200)
@given(st.lists(st.one_of(v4_nets, v6_nets), max_size=8), st.lists(addresses, max_size=10))
def test_network_membership_matches_ipaddress(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    parsed = parse_ignoreip(" ".join(str(n) for n in nets))
    ignores = IgnoreList(parsed, ignoreself=False)
    for net in nets:  # also probe the network's edges
        probes += [net.network_address, net.broadcast_address]
    for ip in probes:
        plain = normalize_address(str(ip))
        assert plain is not None
        expected = any(plain in n for n in parsed.networks if n.version == plain.version)
        assert (ignores.check(str(ip)) is IgnoreSource.IP) == expected


spellings = st.one_of(
    addresses.map(str),
    addresses.filter(lambda ip: ip.version == 6).map(lambda ip: ip.exploded.upper()),
    st.integers(0, 2**32 - 1).map(lambda v: f"::ffff:{ipaddress.IPv4Address(v)}"),
    st.text(alphabet="0123456789abcdefABCDEF.:%[]x /", max_size=45),
)


@settings(max_examples=500)
@given(spellings)
def test_fast_address_parsing_agrees_with_ipaddress(text: str) -> None:
    """The per-failure fast path (inet_pton) must read every spelling as ipaddress does."""
    slow = normalize_address(text)
    fast = _address_key(text)
    if slow is None:
        assert fast is None
    else:
        assert fast == _ip_key(slow)


def test_set_ignoreip_at_run_time_keeps_names_it_still_lists_resolved() -> None:
    ignores = IgnoreList(parse_ignoreip("10.0.0.0/8 home.example"))
    ignores.update_resolved("home.example", ["192.0.2.5"], 0)
    assert ignores.check("192.0.2.5") is IgnoreSource.DNS
    ignores.set_ignoreip(parse_ignoreip("home.example 192.0.2.9"))
    assert ignores.check("192.0.2.5") is IgnoreSource.DNS  # still known, not re-resolved
    assert ignores.check("192.0.2.9") is IgnoreSource.IP
    assert ignores.check("10.1.1.1") is None  # dropped from the list
