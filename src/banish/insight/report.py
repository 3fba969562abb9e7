"""``banish report``'s numbers: who was banned, from where, when, how often, for which service.

Owns turning the history (``store/insight.py``'s two aggregate passes) into a ``Report``: plain
data (dicts and lists) that every renderer (``render.py``: table, json, csv; ``html.py``) and
the dashboard show as they are. Two passes rather than one query per figure, so a million
history rows stay under two seconds: a pass by 15-minute bucket, jail and node (totals, per
jail, per node, per hour of day, per day, first and last seen) and a pass by address (top and
repeat offenders, and, joined with the addresses' origins, per country and per AS), run on
two connections at once. Both read ``insight_rows``, whose covering indexes make them
in-order index scans (the same indexes on ``ban_history`` would slow every ban).

Old history without origins is enriched first (``enrich.fill_missing``), so a report over bans
made before enrichment existed, or with it off, still has countries.
Must not print or format: numbers only. Times are POSIX seconds; hours and days are in the
local time zone, or UTC when asked.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..store import insight as db
from .countries import COUNTRIES
from .enrich import fill_missing
from .geo import Geo

TOP = 20
"""Rows in the "top" lists (offenders, countries, AS, users)."""


def _label_country(country: str, scope: str) -> str:
    if country:
        return country
    return f"({scope})" if scope else "(not looked up)"


def _row(key: str, bans: int, failures: int, **extra: Any) -> dict[str, Any]:
    return {"key": key, "bans": bans, "failures": failures,
            "failures_per_ban": round(failures / bans, 2) if bans else 0.0, **extra}


def _sorted(rows: Iterable[dict[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    out = sorted(rows, key=lambda r: (-r["bans"], str(r["key"])))
    return out if limit is None else out[:limit]


def build(conn: sqlite3.Connection, scope: db.Scope, *,
          geo: Geo | Callable[[], Geo] | None = None,
          utc: bool = False, now: float | None = None, enrich: bool = True,
          second: sqlite3.Connection | None = None) -> dict[str, Any]:
    """The report over ``scope`` as plain data (see the module docstring for its shape).

    ``second``: another connection to the same file; the address pass then runs on it in a
    worker thread while this one does the time pass (SQLite lets go of the GIL, so on two
    cores the report takes the longer pass, not the sum)."""
    now = time.time() if now is None else now
    db.sync(conn)
    if enrich and geo is not None:
        fill_missing(conn, geo, now)
    convert = time.gmtime if utc else time.localtime
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(db.by_address, second, scope, TOP) if second is not None \
            else None
        time_rows = db.buckets(conn, scope)
        user_rows = db.users(conn, scope, TOP)
        addresses = pending.result() if pending is not None else \
            db.by_address(conn, scope, TOP)

    totals_bans = totals_failures = 0
    first: float | None = None
    last: float | None = None
    jails: dict[str, list[Any]] = defaultdict(lambda: [0, 0, None, None])
    nodes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    hours = [[0, 0] for _ in range(24)]
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    stamp_cache: dict[int, tuple[int, str]] = {}
    for start, jail, origin, bans, failures, lo, hi in time_rows:
        totals_bans += bans
        totals_failures += failures
        first = lo if first is None else min(first, lo)
        last = hi if last is None else max(last, hi)
        j = jails[jail]
        j[0] += bans
        j[1] += failures
        j[2] = lo if j[2] is None else min(j[2], lo)
        j[3] = hi if j[3] is None else max(j[3], hi)
        n = nodes[origin or scope.local]
        n[0] += bans
        n[1] += failures
        stamp = stamp_cache.get(start)
        if stamp is None:
            t = convert(start)
            stamp = stamp_cache[start] = (t.tm_hour, time.strftime("%Y-%m-%d", t))
        hours[stamp[0]][0] += bans
        hours[stamp[0]][1] += failures
        d = days[stamp[1]]
        d[0] += bans
        d[1] += failures

    def offender(r: tuple[Any, ...]) -> dict[str, Any]:
        return {"address": r[0], "bans": r[1], "failures": r[2], "first_seen": r[3],
                "last_seen": r[4], "repeat": bool(r[5]), "country": r[6], "asn": r[7],
                "as_org": r[8], "scope": r[9]}

    countries = [_row(_label_country(c, where), b, f, addresses=n,
                      name=COUNTRIES.get(c, (c, 0.0, 0.0))[0] if c else _label_country(c, where))
                 for c, where, b, f, n in addresses.countries]
    by_jail = _sorted(_row(k, v[0], v[1], first_seen=v[2], last_seen=v[3])
                      for k, v in jails.items())
    return {
        "period": {"since": scope.since, "until": scope.until, "utc": utc},
        "filters": {"jails": list(scope.jails), "nodes": list(scope.nodes)},
        "generated_at": now,
        "totals": {
            "bans": totals_bans, "failures": totals_failures, "addresses": addresses.addresses,
            "repeat_offenders": addresses.repeaters,
            "failures_per_ban": round(totals_failures / totals_bans, 2) if totals_bans else 0.0,
            "first_seen": first, "last_seen": last,
            "countries": sum(1 for r in countries if not r["key"].startswith("(")),
            "address_scopes": {k or "not looked up": v
                               for k, v in sorted(addresses.scopes.items())},
        },
        "by_jail": by_jail,
        "services": [r["key"] for r in by_jail],
        "by_node": _sorted(_row(k, v[0], v[1]) for k, v in nodes.items()),
        "by_country": _sorted(countries),
        "by_asn": _sorted(
            (_row(f"AS{a}" if a is not None else o, b, f, asn=a, as_org=o, addresses=n)
             for a, o, b, f, n in addresses.systems), TOP),
        "by_hour": [{"hour": h, "bans": b, "failures": f} for h, (b, f) in enumerate(hours)],
        "by_day": [{"day": d, "bans": v[0], "failures": v[1]} for d, v in sorted(days.items())],
        "top_offenders": [offender(r) for r in addresses.top],
        "repeat_offenders": [offender(r) for r in addresses.repeat],
        "users": [{"user": u, "bans": n} for u, n in user_rows],
    }
