#!/usr/bin/env python3
"""What insight costs and how fast it answers (issue 12): ``banish report`` over a million
history rows, the dashboard's page of 100,000 active bans, enrichment per ban, and the
daemon's 100,000-ban bulk with enrichment on and off.

Owns: the "insight" sections appended to bench/RESULTS.md with --record.

- report: a seeded history of --history rows (tests/insight/history.py: three nodes, five
  jails, IPv4 and IPv6) in a temporary store; ``banish report --format json`` is run in
  process: once cold (it looks up the origins the history lacks and writes them back), then
  --rounds times warm; the warm median is the figure.
- dashboard: --active active bans; ``/api/active`` pages (first, middle, last) and ``/``
  through starlette's TestClient (server time, no network), the slowest request of each.
- enrichment: ``Geo.lookup`` per address over 100,000 distinct addresses (the shipped data),
  and the whole enrichment of one 100,000-ban event (lookups + SQLite writes).
- bulk: bench/bans.py's daemon (nftables in a network namespace) runs ``banish ban bench -``
  with --count addresses, rounds alternating geoipdb = off / shipped; the issue asks the
  medians to stay within 10 %. Also: how long after the ban command returned the store held
  every origin.

Must not: touch the host's firewall (namespaces only), or edit RESULTS.md beyond appending.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

SECTION = "insight: report, dashboard, enrichment (bench/insight.py)"


def bench_report(rows: int, rounds: int, tmp: Path) -> list[str]:
    from tests.insight.history import MONTH, START, generate

    from banish.cli.main import main as banish

    db = tmp / "history.sqlite3"
    started = time.perf_counter()
    generate(db, rows, addresses=max(10, rows // 5))
    made = time.perf_counter() - started
    argv = ["report", "--db", str(db), "--since", str(START), "--until", str(START + MONTH + 1),
            "--format", "json", "-o", str(tmp / "report.json")]
    started = time.perf_counter()
    banish(argv)
    cold = time.perf_counter() - started
    warm = []
    for _ in range(rounds):
        started = time.perf_counter()
        banish(argv)
        warm.append(time.perf_counter() - started)
    addresses = sqlite3.connect(db).execute("SELECT count(*) FROM address_origin").fetchone()[0]
    return [f"| `banish report` over {rows:,} history rows ({addresses:,} addresses), warm | "
            f"{', '.join(f'{x:.2f}' for x in warm)} | **{statistics.median(warm):.2f}** |",
            f"| the same, cold (looks up and stores {addresses:,} origins first) | "
            f"{cold:.2f} | {cold:.2f} |",
            f"| (generating the history, not part of the report) | {made:.1f} | |"]


def bench_dashboard(active: int, tmp: Path) -> list[str]:
    import warnings

    from banish.events import Ban
    from banish.store.sqlite import SqliteStore
    from banish.web.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    db = tmp / "active.sqlite3"
    now = time.time()
    with SqliteStore(db) as store:
        store.add_bans([Ban(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}", "bulk",
                            now - i, 30 * 86400) for i in range(active)])
    token = "bench-token-" + "x" * 20
    app = create_app(dbfile=str(db), socket_path=str(tmp / "none.sock"), token=token)
    out = []
    with TestClient(app) as client:
        client.post("/login", data={"token": token})
        client.get("/api/active")  # a running dashboard has the pages cached
        pages = (active + 99) // 100
        for label, path in (("page 1", "/api/active?page=0"),
                            ("middle page", f"/api/active?page={pages // 2}"),
                            ("last page", f"/api/active?page={pages - 1}"),
                            ("the page itself (/)", "/")):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                assert client.get(path).status_code == 200
                times.append(time.perf_counter() - started)
            out.append(f"| dashboard with {active:,} active bans: {label} | "
                       f"{', '.join(f'{x * 1000:.0f}' for x in times)} ms | "
                       f"**{max(times) * 1000:.0f} ms** (slowest) |")
    return out


def bench_enrichment(tmp: Path) -> list[str]:
    import random

    from tests.insight.history import _address

    from banish.events import Ban
    from banish.insight.enrich import Enricher
    from banish.insight.geo import Geo
    from banish.store.sqlite import SqliteStore

    rng = random.Random(7)
    addrs = list(dict.fromkeys(_address(rng) for _ in range(110_000)))[:100_000]
    started = time.perf_counter()
    geo = Geo.open("shipped")
    opened = time.perf_counter() - started
    started = time.perf_counter()
    for a in addrs:
        geo.lookup(a)
    per = (time.perf_counter() - started) / len(addrs) * 1e6

    db = tmp / "enrich.sqlite3"
    SqliteStore(db).close()
    bans = tuple(Ban(a, "bulk", 1.0, 60) for a in addrs)

    async def run() -> float:
        enricher = Enricher(str(db), "shipped", clock=time.time)
        enricher.geo = geo
        began = time.perf_counter()  # the work itself, not the wait for a quiet moment
        await enricher._enrich(list(bans))
        took = time.perf_counter() - began
        await enricher.close()
        return took

    whole = asyncio.run(run())
    return [f"| opening the shipped data (geoip2fast, once per daemon) | {opened:.2f} s | |",
            f"| `Geo.lookup`, {len(addrs):,} distinct addresses (30 % IPv6) | "
            f"{per:.1f} µs per address | |",
            f"| enriching one {len(addrs):,}-ban event (lookups + SQLite writes) | "
            f"{whole:.2f} s | {whole / len(addrs) * 1e6:.1f} µs per ban |"]


def bench_bulk(count: int, rounds: int, tmp: Path) -> list[str]:
    from bans import JAIL, BanishDaemon, addresses, netns, wait
    from run_regex import find_banish

    banish = find_banish(None)
    if banish is None:
        raise SystemExit("banish not found")
    ips = addresses(count, 0.3, 20240123)
    times: dict[str, list[float]] = {"off": [], "shipped": []}
    drained: list[float] = []
    for i in range(rounds):
        for mode in ("off", "shipped"):
            root = tmp / f"bulk-{i}-{mode}"
            (root / "cfg").mkdir(parents=True)
            (root / "cfg" / "banish.local").write_text(
                f"[Definition]\ngeoipdb = {mode}\nenrich = live\n")
            with netns("insight") as ns:
                daemon = BanishDaemon(banish, ns, root, "nftables")
                try:
                    seconds = daemon.ban_stdin(ips)
                    held = ns.set_sizes("banish", [f"{JAIL}-v4", f"{JAIL}-v6"])
                    if held != len(ips):
                        raise RuntimeError(f"the kernel holds {held} of {len(ips)} bans")
                    if mode == "shipped":
                        after = time.perf_counter()

                        def stored(root: Path = root) -> bool:
                            with sqlite3.connect(root / "banish.sqlite3") as c:
                                n = c.execute("SELECT count(*) FROM address_origin").fetchone()
                            return int(n[0]) >= len(ips)

                        wait(stored, 600, "every origin stored", interval=0.2)
                        drained.append(time.perf_counter() - after)
                finally:
                    daemon.stop()
            times[mode].append(seconds)
            print(f"bulk round {i + 1} geoipdb={mode}: {seconds:.2f} s", file=sys.stderr)
    off, on = statistics.median(times["off"]), statistics.median(times["shipped"])
    return [f"| bulk of {count:,} bans, enrichment off (`geoipdb = off`) | "
            f"{', '.join(f'{x:.2f}' for x in times['off'])} | {off:.2f} s |",
            f"| bulk of {count:,} bans, enrichment on (shipped data) | "
            f"{', '.join(f'{x:.2f}' for x in times['shipped'])} | {on:.2f} s |",
            "",
            f"Ratio on/off (medians): **{on / off:.3f}** ({(on / off - 1) * 100:+.1f} %); every "
            f"origin was in the store a median {statistics.median(drained):.1f} s after the ban "
            "command returned (enrichment runs after the ban, beside it)."]


def main(argv: list[str] | None = None) -> int:
    from bans import machine_info
    from machine import append_section
    from run_regex import RESULTS, find_banish

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--history", type=int, default=1_000_000, help="history rows (report)")
    ap.add_argument("--active", type=int, default=100_000, help="active bans (dashboard)")
    ap.add_argument("--count", type=int, default=100_000, help="bulk bans (daemon)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip", action="append", default=[],
                    choices=("report", "dashboard", "enrichment", "bulk"))
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    ap.add_argument("--note")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = os.getloadavg()
    rows = ["| what | runs | result |", "|---|---|---:|"]
    with tempfile.TemporaryDirectory(prefix="banish-bench-") as tmp:
        if "report" not in a.skip:
            rows += bench_report(a.history, a.rounds, Path(tmp))
        if "dashboard" not in a.skip:
            rows += bench_dashboard(a.active, Path(tmp))
        if "enrichment" not in a.skip:
            rows += bench_enrichment(Path(tmp))
        if "bulk" not in a.skip:
            if os.geteuid() != 0:
                ap.error("the bulk part needs root (network namespaces, nftables)")
            rows += bench_bulk(a.count, a.rounds, Path(tmp))
    text = "\n".join(rows)
    print(text)
    if a.record:
        banish = find_banish(None)
        info = machine_info(banish) if banish is not None else {}
        append_section(RESULTS, SECTION, [
            *(f"{k}: {v}" for k, v in info.items()),
            f"command: `python3 bench/insight.py {shlex.join(argv or sys.argv[1:])}`",
            *([f"note: {a.note}"] if a.note else [])], load, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
