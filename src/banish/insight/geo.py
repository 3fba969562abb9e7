"""Country, ASN and AS organisation of an address, from data on this machine only.

Owns the choice and reading of the GeoIP data and the classification of addresses that no
database should answer for. Sources, by ``geoipdb =`` in banish.conf:

- unset or ``shipped``: the data inside the ``geoip2fast`` package from PyPI (country and AS
  organisation for IPv4 and IPv6, built from MaxMind's GeoLite2 CSV; nothing is downloaded at
  run time -- the package can fetch newer files, banish never asks it to). It does not carry AS
  numbers, so ``asn`` stays empty with it.
- one or more ``.mmdb`` paths (MaxMind GeoIP2/GeoLite2 Country or ASN, DB-IP lite; read with
  ``maxminddb``): each answers what it knows (``country.iso_code``,
  ``autonomous_system_number``/``_organization``), the first to answer a field wins.
- ``off``: no enrichment.

Private, loopback, link-local, shared (CGNAT) addresses are ``private`` and documentation,
multicast, reserved and unspecified ones ``reserved``, decided here from IANA's special-purpose
ranges before any database (the shipped data answers ``::1`` with IPv4's 0.0.0.0/8, for one). A global
address no source knows is ``unknown``. A database that is missing or broken leaves every field
empty and is reported once by ``Geo.open``; a lookup never raises.

Must not touch the network, the store or the event loop.
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

log = logging.getLogger("banish.server")

SHIPPED = "shipped"
OFF = "off"

def _ranges(spec: tuple[tuple[str, str], ...]) -> tuple[list[int], list[tuple[int, str]]]:
    """Sorted, non-overlapping networks -> (starts, [(end, scope)]) for bisect."""
    nets = sorted((ipaddress.ip_network(n), scope) for n, scope in spec)
    return ([int(n.network_address) for n, _ in nets],
            [(int(n.broadcast_address), scope) for n, scope in nets])


# IANA's special-purpose registries, as integer ranges: ``ipaddress``'s is_global/is_private
# walk lists of networks per call (~35 µs an address); a bisect here costs ~1 µs.
_V4 = _ranges((
    ("0.0.0.0/8", "reserved"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "private"),
    ("127.0.0.0/8", "private"), ("169.254.0.0/16", "private"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "private"), ("192.0.2.0/24", "reserved"), ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "private"), ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"), ("224.0.0.0/4", "reserved"), ("240.0.0.0/4", "reserved")))
_V6 = _ranges((
    ("::1/128", "private"), ("2001:db8::/32", "reserved"), ("3fff::/20", "reserved"),
    ("fc00::/7", "private"), ("fe80::/10", "private"), ("fec0::/10", "private")))
_V6_GLOBAL = ipaddress.ip_network("2000::/3")
_V6_GLOBAL_LO, _V6_GLOBAL_HI = int(_V6_GLOBAL.network_address), int(_V6_GLOBAL.broadcast_address)


def _lookup(ranges: tuple[list[int], list[tuple[int, str]]], n: int) -> str | None:
    i = bisect.bisect_right(ranges[0], n) - 1
    if i >= 0 and n <= ranges[1][i][0]:
        return ranges[1][i][1]
    return None


class Place(NamedTuple):
    """What the data says about one address (empty strings / None: not known)."""

    country: str
    asn: int | None
    as_org: str
    scope: str
    """global, private, reserved or unknown (global but in no database)."""


NOWHERE = Place("", None, "", "unknown")


class Source(Protocol):
    name: str

    def lookup(self, address: str) -> tuple[str, int | None, str] | None:
        """(country, asn, as_org) of a global address, or None when the data has no entry."""


def scope_of(address: str) -> tuple[str, str]:
    """``(scope, host)``: the class of an address or network (its first address is looked up),
    and the host text to look up. Raises ValueError for what is not an address."""
    host = address.split("/", 1)[0]
    try:
        if ":" not in host:
            n = int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
            return _lookup(_V4, n) or "global", host
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        raise ValueError(f"not an address: {address!r}") from None
    n = int.from_bytes(packed, "big")
    if n >> 32 == 0xFFFF:  # IPv4-mapped: the IPv4 address it is
        host = socket.inet_ntop(socket.AF_INET, packed[12:])
        return _lookup(_V4, n & 0xFFFFFFFF) or "global", host
    found = _lookup(_V6, n)
    if found is not None:
        return found, host
    if _V6_GLOBAL_LO <= n <= _V6_GLOBAL_HI:
        return "global", host
    return "reserved", host  # ::, multicast, and the unassigned rest outside 2000::/3


class ShippedSource:
    """geoip2fast's country+ASN IPv4+IPv6 file from inside the installed package."""

    name = SHIPPED
    FILE = "geoip2fast-asn-ipv6.dat.gz"

    def __init__(self) -> None:
        import geoip2fast  # ~0.4 s and ~100 MB: imported only when enrichment is on

        path = os.path.join(os.path.dirname(geoip2fast.__file__), self.FILE)
        if not os.path.isfile(path):
            raise OSError(f"{path} is missing from the geoip2fast package")
        self._db: Any = geoip2fast.GeoIP2Fast(geoip2fast_data_file=path)
        self.path = path

    def lookup(self, address: str) -> tuple[str, int | None, str] | None:
        result = self._db.lookup(address)
        country = result.country_code or ""
        if len(country) != 2 or not country.isalpha() or result.is_private:
            return None  # "--": not found (or a special network the data lists)
        return country, None, result.asn_name or ""


class MmdbSource:
    """One MaxMind DB file: a Country, City or ASN database of MaxMind or DB-IP."""

    def __init__(self, path: str) -> None:
        import maxminddb

        self.name = os.path.basename(path)
        self._reader: Any = maxminddb.open_database(path)

    def lookup(self, address: str) -> tuple[str, int | None, str] | None:
        record = self._reader.get(address)
        if not isinstance(record, dict):
            return None
        country = ""
        for key in ("country", "registered_country"):
            entry = record.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("iso_code"), str):
                country = entry["iso_code"]
                break
        if not country and isinstance(record.get("country_code"), str):  # DB-IP / ipinfo lite
            country = record["country_code"]
        asn = record.get("autonomous_system_number")
        org = record.get("autonomous_system_organization")
        return (country, asn if isinstance(asn, int) else None,
                org if isinstance(org, str) else "")


class Geo:
    """Looks addresses up in its sources; ``Geo.open`` builds one from ``geoipdb``."""

    def __init__(self, sources: Sequence[Source], problem: str = "") -> None:
        self.sources = tuple(sources)
        self.problem = problem
        """Why some data is not there ("" when all is well): shown once, in the log."""

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.sources) or "none"

    @classmethod
    def open(cls, spec: str) -> Geo:
        """``geoipdb`` -> Geo. Never raises for a missing or broken file: the sources that
        open are used, the problem is logged once and kept in ``problem``."""
        spec = spec.strip()
        if spec.lower() in (OFF, "no", "none", "false"):
            return cls(())
        sources: list[Source] = []
        problems: list[str] = []
        for item in spec.split() or [SHIPPED]:
            try:
                sources.append(ShippedSource() if item == SHIPPED else MmdbSource(item))
            except Exception as exc:  # ImportError, OSError, maxminddb's InvalidDatabaseError
                problems.append(f"{item}: {exc}")
        problem = "; ".join(problems)
        if problem:
            log.warning("GeoIP data unavailable, origins of bans stay empty: %s", problem)
        return cls(sources, problem)

    def lookup(self, address: str) -> Place:
        try:
            scope, host = scope_of(address)
        except ValueError:
            return NOWHERE
        if scope != "global":
            return Place("", None, "", scope)
        country, asn, org = "", None, ""
        for source in self.sources:
            try:
                found = source.lookup(host)
            except Exception:  # a corrupt record must cost one empty field, not a ban
                found = None
            if found is None:
                continue
            country = country or found[0]
            asn = asn if asn is not None else found[1]
            org = org or found[2]
            if country and asn is not None and org:
                break
        if not (country or asn is not None or org):
            return NOWHERE
        return Place(country, asn, org, "global")
