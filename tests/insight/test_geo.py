"""Enrichment is right: a table of addresses whose country / ASN / AS organisation the data's
own documentation or test vectors state, IPv4 and IPv6, plus private, reserved and unknown
addresses, through both sources banish reads (the shipped package data, and a .mmdb)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from banish.insight.geo import Geo, Place, scope_of

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def shipped() -> Geo:
    geo = Geo.open("shipped")
    assert geo.problem == ""
    return geo


@pytest.fixture(scope="module")
def mmdb() -> Geo:
    geo = Geo.open(f"{DATA / 'GeoIP2-Country-Test.mmdb'} {DATA / 'GeoLite2-ASN-Test.mmdb'}")
    assert geo.problem == ""
    return geo


# geoip2fast's README (v1.2.2): the lookup examples and the IPv6 coverage listing.
SHIPPED = [
    ("191.251.128.1", "BR", "TELEFONICA BRASIL S.A"),
    ("3.2.35.65", "BR", "AMAZON-02"),
    ("200.204.0.10", "BR", "TELEFONICA BRASIL S.A"),
    ("9.9.9.9", "US", None),
    ("15.20.25.30", "US", None),
    ("2c0f:ffc0::1", "ZA", None),     # "Network: 2c0f:ffc0::/32 ... ZA South Africa"
    ("2c0f:ffe8::1", "NG", None),     # "Network: 2c0f:ffe8::/32 ... NG Nigeria"
    ("::ffff:3.2.35.65", "BR", "AMAZON-02"),  # IPv4-mapped IPv6 is the IPv4 address
    ("3.2.35.64/26", "BR", "AMAZON-02"),      # a widened ban: its network's first address
]


@pytest.mark.parametrize(("address", "country", "org"), SHIPPED)
def test_shipped_data_known_addresses(shipped: Geo, address: str, country: str,
                                      org: str | None) -> None:
    place = shipped.lookup(address)
    assert place.scope == "global"
    assert place.country == country
    if org is not None:
        assert place.as_org == org
    assert place.asn is None  # the shipped data names the AS, it has no numbers


# MaxMind's test databases and their source records (tests/insight/data/README.md).
MMDB = [
    ("81.2.69.160", Place("GB", None, "", "global")),
    ("89.160.20.112", Place("SE", 29518, "Bredband2 AB", "global")),
    ("216.160.83.56", Place("US", 209, "", "global")),
    ("2001:218::1", Place("JP", None, "", "global")),
    ("2a02:cf40::1", Place("NO", None, "", "global")),
    ("1.128.0.1", Place("", 1221, "Telstra Pty Ltd", "global")),
    ("12.81.92.5", Place("", 7018, "AT&T Services", "global")),
    ("2001:1700::1", Place("", 6730, "Sunrise Communications AG", "global")),
    ("2001:1c00::1", Place("", 9143, "Ziggo B.V.", "global")),
    ("1.2.3.4", Place("", None, "", "unknown")),
]


@pytest.mark.parametrize(("address", "expected"), MMDB)
def test_mmdb_known_addresses(mmdb: Geo, address: str, expected: Place) -> None:
    assert mmdb.lookup(address) == expected


SPECIAL = [
    ("10.20.30.40", "private"), ("192.168.1.1", "private"), ("172.16.0.9", "private"),
    ("127.0.0.1", "private"), ("169.254.10.20", "private"), ("100.64.0.1", "private"),
    ("::1", "private"), ("fe80::1", "private"), ("fd00::1", "private"),
    ("192.0.2.1", "reserved"), ("198.51.100.7", "reserved"), ("203.0.113.9", "reserved"),
    ("2001:db8::1", "reserved"), ("2001:db8::/64", "reserved"), ("224.0.0.1", "reserved"),
    ("ff02::1", "reserved"), ("240.0.0.1", "reserved"), ("0.0.0.0", "reserved"),
    ("::", "reserved"),
]


@pytest.mark.parametrize(("address", "scope"), SPECIAL)
def test_special_addresses_never_get_a_country(shipped: Geo, mmdb: Geo, address: str,
                                               scope: str) -> None:
    assert scope_of(address)[0] == scope
    for geo in (shipped, mmdb):
        assert geo.lookup(address) == Place("", None, "", scope)


def test_unknown_and_invalid(shipped: Geo) -> None:
    # The README's "not found in database" example.
    assert shipped.lookup("23.142.129.0") == Place("", None, "", "unknown")
    assert shipped.lookup("not-an-address").scope == "unknown"


def test_missing_or_broken_database_leaves_fields_empty_and_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"\0" * 1000)
    with caplog.at_level(logging.WARNING, logger="banish.server"):
        geo = Geo.open(f"{tmp_path / 'absent.mmdb'} {broken}")
        for _ in range(3):
            assert geo.lookup("81.2.69.160") == Place("", None, "", "unknown")
    warnings = [r for r in caplog.records if "GeoIP data unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "absent.mmdb" in geo.problem and "broken.mmdb" in geo.problem


def test_off_means_no_sources() -> None:
    geo = Geo.open("off")
    assert geo.sources == () and geo.name == "none"
    assert geo.lookup("9.9.9.9") == Place("", None, "", "unknown")
