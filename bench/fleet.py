#!/usr/bin/env python3
"""Fleet propagation: from a ban in node A's kernel to the same element in B's and C's.

Runs the fleet lab of the tests (tests/fleet/lab.py): a throwaway PostgreSQL (Debian's
server binaries, a Unix socket in a temporary directory), three banish daemons, each in its
own network namespace with its own nftables table. Needs root, PostgreSQL and nftables; never
touches the host's ruleset, interfaces or services.

Two loads:

1. steady: 1,000 bans on A at 100 bans/s (one failed-login line every 10 ms, maxretry 1, read
   by A's file source), p50/p99/max latency from A's kernel to B's and C's kernels, each
   element timed by ``nft monitor`` in the namespaces (the kernel's own announcement of a new
   set element, stamped when this process reads it);
2. bulk: one ``banish ban demo -`` of 100,000 addresses on A; from A's "Ban 100000 addresses
   at once" log line to B's and C's (each written once that node's firewall and store hold
   all of them).

Then the database's cost: rows and bytes per ban (events + active bans, tables and indexes).

    sudo python3 bench/fleet.py [--record]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import pytest  # noqa: E402 - MonkeyPatch sets BANISH_NETNS per daemon, as in the tests
from tests.fleet.lab import FleetLab, Node, bulk_ban, fleet_lab  # noqa: E402
from tests.fleet.postgres import cluster  # noqa: E402
from tests.integration.daemon import stamp, wait_for  # noqa: E402

from machine import cores, cpu_model, memory  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
_ADDRESS = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")


class Monitor:
    """``nft monitor new elements`` inside a node's namespace: first-seen time per address."""

    def __init__(self, node: Node) -> None:
        self.seen: dict[str, float] = {}
        self.proc = subprocess.Popen(node.ns.argv("nft", "monitor", "new", "elements"),
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(0.3)  # the monitor subscribes before anything is banned

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            for address in _ADDRESS.findall(line):
                self.seen.setdefault(address, now)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def steady(lab: FleetLab, count: int, rate: float) -> dict[str, list[float]]:
    a, others = lab.nodes["A"], [n for n in lab.nodes.values() if n.name != "A"]
    monitors = {n.name: Monitor(n) for n in (a, *others)}
    addresses = [f"10.218.{i // 250}.{i % 250 + 1}" for i in range(count)]
    start = time.monotonic()
    with open(a.daemon.logs / "a.log", "a") as log:
        for i, ip in enumerate(addresses):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            log.write(f"{stamp()} login failed for root from {ip}\n")
            log.flush()
    wait_for(lambda: all(len([x for x in addresses if x in m.seen]) == count
                         for m in monitors.values()), timeout=60, what="every ban everywhere")
    for m in monitors.values():
        m.close()
    return {n.name: [monitors[n.name].seen[ip] - monitors["A"].seen[ip] for ip in addresses]
            for n in others}


_AT_ONCE = re.compile(r"^(\S+ \S+) .*\[demo\] Ban (\d+) addresses at once", re.M)


def bulk(lab: FleetLab, count: int) -> dict[str, float]:
    """Timed by each daemon's own "[demo] Ban N addresses at once" line, which it writes once
    the firewall transaction and the store commit are both done (same machine, same clock):
    ``nft monitor`` itself takes seconds to print 100,000 elements."""
    a, others = lab.nodes["A"], [n for n in lab.nodes.values() if n.name != "A"]
    addresses = [f"10.{220 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(count)]
    began = time.time()
    bulk_ban(a, addresses)

    def done(node: Node) -> float | None:
        found = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                 for m in _AT_ONCE.finditer(node.daemon.log_text()) if int(m[2]) == count]
        return found[-1] if found else None

    wait_for(lambda: all(done(n) is not None for n in (a, *others)), timeout=180,
             what="the bulk everywhere")
    last = {n.name: done(n) or 0.0 for n in (a, *others)}
    return {"A applied": last["A"] - began,
            **{f"{n.name} after A": last[n.name] - last["A"] for n in others}}


def database_cost(lab: FleetLab) -> dict[str, float]:
    out = lab.sql("SELECT count(*), sum(cardinality(addresses)), "
                  "pg_total_relation_size('banish_events') FROM banish_events").strip()
    rows, addresses, size = (int(x) for x in out.split("|"))
    return {"event rows": rows, "addresses in them": addresses, "bytes in all": size,
            "bytes per ban": size / addresses}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steady", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--bulk", type=int, default=100_000)
    ap.add_argument("--receivers", type=int, default=2,
                    help="nodes besides A (2: B and C; 1: B alone, for a receiver that "
                    "does not share the two cores with another receiver)")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    args = ap.parse_args()
    extra = "maxretry = 1\nbantime = 1d\n"
    patch = pytest.MonkeyPatch()
    with cluster() as pg, tempfile.TemporaryDirectory() as tmp, fleet_lab(
            pg, Path(tmp), patch, {name: extra for name in "ABC"[:1 + args.receivers]}) as lab:
        latencies = steady(lab, args.steady, args.rate)
        after_steady = database_cost(lab)
        bulk_times = bulk(lab, args.bulk) if args.bulk else {}
        after_bulk = database_cost(lab)
    patch.undo()
    lines = [f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — fleet propagation (bench/fleet.py)",
             "", f"Machine: {cpu_model()}, {cores()} cores, {memory()}; PostgreSQL "
             f"(Debian, throwaway cluster, fsync off) on the same machine; "
             f"{1 + args.receivers} daemons.", "",
             f"Steady: {args.steady} bans on A at {args.rate:.0f}/s (log lines, maxretry 1), "
             "latency from A's kernel element to the node's kernel element:", "",
             "| node | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|"]
    for name, values in latencies.items():
        ms = [v * 1000 for v in values]
        lines.append(f"| {name} | {statistics.median(ms):.0f} | {percentile(ms, 0.99):.0f} | "
                     f"{max(ms):.0f} |")
    lines += ["", f"Bulk: `banish ban demo -` of {args.bulk:,} addresses on A:", "",
              *(f"- {k}: {v:.2f} s" for k, v in bulk_times.items()), "",
              "Database cost (banish_events with its indexes; one row per decision: a log's "
              "ban is one address, the bulk one row):", "",
              "| after | rows | addresses | bytes | bytes per ban |", "|---|---:|---:|---:|---:|",
              *(f"| {label} | {c['event rows']:,.0f} | {c['addresses in them']:,.0f} | "
                f"{c['bytes in all']:,.0f} | {c['bytes per ban']:,.1f} |"
                for label, c in (("the steady bans", after_steady),
                                 ("the bulk too", after_bulk))),
              "", f"Per steady ban: {after_steady['bytes in all'] / args.steady:,.0f} bytes "
              f"(the table's first pages included); per bulk ban: "
              f"{(after_bulk['bytes in all'] - after_steady['bytes in all']) / max(1, args.bulk):,.1f}"
              " bytes.", ""]
    text = "\n".join(lines)
    print(text)
    if args.record:
        with open(RESULTS, "a") as fh:
            fh.write("\n" + text)
        print(f"appended to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
