"""The enrichment subscriber: origins stored beside the ban history, off the ban path."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from banish.daemon.stream import EventStream
from banish.events import Ban, BanEvent, EventKind
from banish.insight import enrich
from banish.insight.enrich import Enricher, fill_missing
from banish.insight.geo import Geo
from banish.store import insight as db
from banish.store.sqlite import SqliteStore


def _origins(path: Path) -> dict[str, tuple[object, ...]]:
    conn = db.connect(str(path))
    try:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT address, country, asn, as_org, scope, source, hostname "
            "FROM address_origin")}
    finally:
        conn.close()


async def _run(path: Path, geoipdb: str, events: list[BanEvent], *,
               reversedns: bool = False) -> Enricher:
    stream = EventStream()
    enricher = Enricher(str(path), geoipdb, reversedns=reversedns, clock=lambda: 5000.0)
    enricher.subscribe(stream)
    for event in events:
        stream.publish(event)
    assert await stream.drain(30)
    assert await enricher.flush(30)
    await stream.close()
    await enricher.close()
    return enricher


def test_bans_get_their_origin_and_user(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    bans = (Ban("191.251.128.1", "sshd", 1000.0, 600, 5, fields={"user": "root"}),
            Ban("2c0f:ffc0::1", "sshd", 1000.0, 600, 5),
            Ban("10.20.30.40", "nginx", 1000.0, 600, 3),
            Ban("23.142.129.0", "nginx", 1000.0, 600, 3))
    with SqliteStore(path) as store:
        store.add_bans(bans)
    enricher = asyncio.run(_run(path, "shipped", [
        BanEvent(EventKind.BAN, 1000.0, bans),
        BanEvent(EventKind.UNBAN, 1001.0, bans[:1]),     # only bans are enriched
        BanEvent(EventKind.BAN, 1002.0, (bans[0]._replace(banned_at=1002.0),)),  # a repeat
    ]))
    rows = _origins(path)
    assert rows["191.251.128.1"] == ("BR", None, "TELEFONICA BRASIL S.A", "global", "shipped",
                                     None)
    assert rows["2c0f:ffc0::1"][:1] == ("ZA",)
    assert rows["10.20.30.40"] == ("", None, "", "private", "shipped", None)
    assert rows["23.142.129.0"] == ("", None, "", "unknown", "shipped", None)
    assert enricher.looked_up == 4
    conn = db.connect(str(path))
    assert conn.execute("SELECT address, jail, banned_at, user FROM ban_users").fetchall() == [
        ("191.251.128.1", "sshd", 1000.0, "root"), ("191.251.128.1", "sshd", 1002.0, "root")]
    conn.close()


def test_missing_database_leaves_fields_empty_and_logs_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "b.sqlite3"
    SqliteStore(path).close()
    events = [BanEvent(EventKind.BAN, 1000.0 + i, (Ban(f"9.9.9.{i}", "sshd", 1000.0, 60, 1),))
              for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="banish.server"):
        asyncio.run(_run(path, str(tmp_path / "nowhere.mmdb"), events))
    rows = _origins(path)
    assert len(rows) == 5
    assert all(r[:4] == ("", None, "", "unknown") for r in rows.values())
    assert sum("GeoIP data unavailable" in r.getMessage() for r in caplog.records) == 1


def test_publishing_a_bulk_ban_never_waits_for_enrichment(tmp_path: Path) -> None:
    """The ban path only publishes: 100,000 addresses cost the publisher a queue append, and
    the loop keeps turning while they are looked up (slices with yields between them)."""
    path = tmp_path / "b.sqlite3"
    SqliteStore(path).close()
    bans = tuple(Ban(f"{1 + i // 65536}.{(i // 256) % 256}.{i % 256}.7", "bulk", 1000.0, 60)
                 for i in range(100_000))

    async def main() -> tuple[float, float, int]:
        stream = EventStream()
        enricher = Enricher(str(path), "shipped", clock=lambda: 5000.0)
        enricher.subscribe(stream)
        ticks = 0
        worst = 0.0

        async def ticker() -> None:
            nonlocal ticks, worst
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                worst = max(worst, now - last)
                last = now
                ticks += 1

        # The data is opened on the first event; open it before timing the bulk ban.
        stream.publish(BanEvent(EventKind.BAN, 999.0, (Ban("9.9.9.9", "x", 999.0, 60),)))
        assert await stream.drain(30)
        assert await enricher.flush(30)
        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        stream.publish(BanEvent(EventKind.BAN, 1000.0, bans))
        published = time.perf_counter() - started
        assert await stream.drain(120)
        assert await enricher.flush(120)
        task.cancel()
        await stream.close()
        return published, worst, enricher.looked_up

    published, worst, looked_up = asyncio.run(main())
    assert published < 0.01
    assert looked_up == 100_001
    # Threads (the SQLite write) share the GIL, so allow scheduling noise, but no stall of
    # the whole lookup (seconds) in one go.
    assert worst < 0.5, worst
    assert len(_origins(path)) == 100_001


def test_reverse_dns_is_recorded_when_asked(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "b.sqlite3"
    SqliteStore(path).close()
    monkeypatch.setattr(enrich, "DNS_TIMEOUT", 5.0)

    async def main() -> None:
        enricher = Enricher(str(path), "off", reversedns=True, clock=lambda: 5000.0)
        db.save_origins(enricher._connection(), [db.Origin("127.0.0.1", "", None, "",
                                                           "private", "none")], 1.0)
        enricher._resolve(["127.0.0.1", "127.0.0.1"])  # the second one is already pending
        assert len(enricher._dns_tasks) == 1
        await asyncio.gather(*enricher._dns_tasks)
        await enricher.close()

    asyncio.run(main())
    assert _origins(path)["127.0.0.1"][5] == "localhost"


def test_old_history_is_filled_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    with SqliteStore(path) as store:
        store.add_bans([Ban("3.2.35.65", "sshd", 100.0, 60), Ban("9.9.9.9", "sshd", 200.0, 60),
                        Ban("9.9.9.9", "sshd", 300.0, 60)])
    conn = db.connect(str(path))
    found = fill_missing(conn, Geo.open("shipped"), 1.0)
    assert set(found) == {"3.2.35.65", "9.9.9.9"}
    assert db.missing(conn) == ([], 3)
    assert fill_missing(conn, lambda: pytest.fail("nothing missing: no data opened"), 1.0) == {}
    with SqliteStore(path) as store:  # banned later, with enrichment off
        store.add_bans([Ban("1.1.1.1", "sshd", 900.0, 60), Ban("9.9.9.9", "sshd", 950.0, 60)])
    db.sync(conn)
    assert db.missing(conn) == (["1.1.1.1"], 5)
    assert set(fill_missing(conn, Geo.open("shipped"), 1.0)) == {"1.1.1.1"}
    conn.close()
