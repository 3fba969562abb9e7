"""The fleet end to end: a real PostgreSQL, real daemons in their own network namespaces, and
the kernels' nftables sets as the judge (plus connection attempts from an attacker's address).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fleet.lab import fleet_lab
from tests.fleet.postgres import Cluster
from tests.integration.daemon import stamp, wait_for
from tests.integration.netns import skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")



def served(lab: object, source: str) -> set[str]:
    """The nodes that still answer ``source`` (a banned address is rejected or dropped)."""
    return {name for name, result in lab.reach(source).items()  # type: ignore[attr-defined]
            if result == "ok"}


def test_a_ban_on_one_node_is_enforced_by_every_node_and_an_unban_lifts_it_everywhere(
        pg: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with fleet_lab(pg, tmp_path, monkeypatch, {"A": "", "B": "", "C": ""}) as lab:
        friend = lab.address(50)
        lab.nodes["C"].daemon.stop()  # C's owner trusts the friend; A and B do not
        lab.nodes["C"].daemon.write_jails(
            (lab.root / "C" / "cfg" / "jail.conf").read_text() + f"ignoreip = {friend}\n")
        lab.start(lab.nodes["C"])
        a, b, c = lab.nodes["A"], lab.nodes["B"], lab.nodes["C"]
        attacker = lab.address(9)
        assert served(lab, attacker) == {"A", "B", "C"}

        a.fail(attacker)
        wait_for(lambda: all(attacker in n.kernel() for n in (a, b, c)), timeout=10,
                 what="the attacker in every node's kernel set")
        assert served(lab, attacker) == set()
        banned_on_b = json.loads(b.daemon.cli("banned", attacker, "--json").stdout)
        assert [(r["jail"], r["origin"]) for r in banned_on_b] == [("demo", "A")]
        assert "ORIGIN" in b.daemon.cli("banned").stdout

        a.fail(friend)
        wait_for(lambda: friend in b.kernel(), timeout=10, what="the friend banned on B")
        wait_for(lambda: "ignored: this node's ignoreip" in c.daemon.log_text(), timeout=10,
                 what="C refusing to ban its friend")
        assert friend not in c.kernel()
        assert served(lab, friend) == {"C"}

        said = b.daemon.cli("unban", attacker).stdout
        assert "lifted on every node of the fleet" in said
        wait_for(lambda: not any(attacker in n.kernel() for n in (a, b, c)), timeout=10,
                 what="the attacker lifted from every kernel")
        assert served(lab, attacker) == {"A", "B", "C"}
        assert "lifted on B" in a.daemon.log_text()

        status = a.fleet()
        assert status["connected"] and status["queued"] == 0
        assert {n["node"] for n in status["nodes"]} == {"A", "B", "C"}
        assert status["bans_by_origin"] == {"A": 1}  # the friend; the attacker was lifted
        assert b.fleet()["bans_by_origin"] == {"A": 1}
        text = a.daemon.cli("status", "--fleet").stdout
        assert "Fleet node A: connected" in text and "NODE" in text


@pytest.mark.parametrize("mode", ["both", "off"])
def test_failures_spread_over_the_fleet_are_counted_together(
        pg: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """2 failures on each of three nodes, maxretry 10 per node, fleetmaxretry 5."""
    extra = f"fleetmaxretry = 5\nmaxretry = 10\nfleet = {mode}\n"
    with fleet_lab(pg, tmp_path, monkeypatch, {"A": extra, "B": extra, "C": extra}) as lab:
        nodes = list(lab.nodes.values())
        spread = lab.address(11)
        for node in nodes:
            node.fail(spread, 2)
        if mode == "both":
            wait_for(lambda: all(spread in n.kernel() for n in nodes), timeout=15,
                     what="the spread attacker banned on all three")
            assert served(lab, spread) == set()
            assert any("across the fleet" in n.daemon.log_text() for n in nodes)
        else:
            # The same failures, counted: each node saw 2 (its status says so), and after
            # the time a fleet count takes (1 s batches), nobody banned.
            wait_for(lambda: all(n.daemon.status("demo")["currently_failed"] == 1
                                 for n in nodes), what="every node counting its failures")
            time.sleep(3)
            assert not any(spread in n.kernel() for n in nodes)
            assert served(lab, spread) == {"A", "B", "C"}


def burst_addresses(count: int, second: int = 215) -> list[str]:
    return [f"10.{second}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def test_database_down_in_a_burst_and_a_node_killed_meanwhile_loses_nothing(
        pg: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 bans on A; PostgreSQL stopped for 30 s in the middle; A killed with SIGKILL and
    restarted during the outage. A enforces everything at once; B and C end with exactly
    the 2,000, each banned once; the database holds each event once."""
    extra = "maxretry = 1\nbantime = 1d\n"
    with fleet_lab(pg, tmp_path, monkeypatch, {"A": extra, "B": extra, "C": extra}) as lab:
        a, b, c = lab.nodes["A"], lab.nodes["B"], lab.nodes["C"]
        burst = burst_addresses(2000)
        first, second = burst[:1000], burst[1000:]
        a.daemon.append("a.log", *(f"{stamp()} login failed for root from {ip}" for ip in first))
        wait_for(lambda: len(b.kernel()) >= 100, timeout=20, what="the burst reaching B")
        pg.stop()
        stopped = time.monotonic()
        try:
            a.daemon.append("a.log",
                            *(f"{stamp()} login failed for root from {ip}" for ip in second))
            wait_for(lambda: len(a.kernel()) == 2000, timeout=20,
                     what="A enforcing the whole burst while the database is down")
            local_done = time.monotonic() - stopped
            a.daemon.kill9()  # whatever was queued or not yet: nothing may be lost
            lab.start(a, wait_ready=False)
            assert len(a.kernel()) == 2000
            status = a.fleet()
            assert not status["connected"] and status["queued"] > 0
            assert len(b.kernel()) < 2000  # B has not seen the end of the burst
            time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
        finally:
            pg.start()
        wait_for(lambda: len(b.kernel()) == 2000 and len(c.kernel()) == 2000, timeout=60,
                 what="B and C holding the whole burst once the database is back")
        wait_for(lambda: a.fleet()["queued"] == 0, timeout=20, what="A's outbox empty")
        assert b.kernel() == c.kernel() == set(burst)
        counted = lab.sql("SELECT count(*), count(DISTINCT a) FROM banish_events, "
                          "unnest(addresses) a WHERE node = 'A' AND kind = 'ban'").strip()
        assert counted == "2000|2000"
        for node in (b, c):  # each ban recorded once in the node's own history
            with closing(sqlite3.connect(node.daemon.db)) as db:
                once = db.execute("SELECT count(*), count(DISTINCT address) FROM ban_history "
                                  "WHERE origin = 'A' AND address LIKE '10.215.%'").fetchone()
            assert once == (2000, 2000), node.name
        assert local_done < 20


def test_a_node_back_after_hours_applies_the_active_fleet_bans_and_not_the_expired(
        pg: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """C ran, stopped, and the fleet banned while it was away -- rows written as three hours
    old on the database's clock -- then C returns; D joins for the first time."""
    with fleet_lab(pg, tmp_path, monkeypatch, {"A": "", "C": ""}) as lab:
        c = lab.nodes["C"]
        c.daemon.stop()
        old = "now() - interval '3 hours'"
        rows = {  # address: expires_at
            "10.216.0.1": f"{old} + interval '1 hour'",     # over two hours ago
            "10.216.0.2": f"{old} + interval '4 hours'",    # one hour left
            "10.216.0.3": "NULL",                           # permanent
            "10.216.0.4": "now() - interval '1 second'",    # just over
        }
        lab.sql("".join(
            "INSERT INTO banish_events (key, kind, jail, addresses, node, banned_at, "
            f"expires_at) VALUES (gen_random_uuid(), 'ban', 'demo', ARRAY['{ip}'], 'A', {old}, "
            f"{end}); " for ip, end in rows.items()))
        lab.start(c)
        d = lab.add("D")  # never ran: catches up from the active bans
        for node in (c, d):
            wait_for(lambda n=node: {"10.216.0.2", "10.216.0.3"} <= n.kernel(), timeout=15,
                     what=f"{node.name} applying the active fleet bans")
            assert node.kernel() & set(rows) == {"10.216.0.2", "10.216.0.3"}
            left = node.kernel_left("10.216.0.2")
            assert left is not None and 3500 <= left <= 3600, left
            assert node.kernel_left("10.216.0.3") is None
            assert not {"10.216.0.1", "10.216.0.4"} & set(node.daemon.bans())


HOSTILE = ["$(touch /tmp/banish-fleet-canary)", "0.0.0.0/0", "not-an-ip", "10.0.0.0/8",
           "::/0", "10.217.0.1; nft flush ruleset", "`id`", "10.217.0.1\nadd rule"]


def test_hostile_rows_are_refused_by_every_node_logged_and_never_reach_nft(
        pg: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = Path("/tmp/banish-fleet-canary")
    canary.unlink(missing_ok=True)
    with fleet_lab(pg, tmp_path, monkeypatch, {"A": "", "B": "", "C": ""}) as lab:
        values = [*HOSTILE, "10.217.0.9"]  # one good row last: the bad ones stop nothing
        statements = []
        for address in values:
            quoted = address.replace("'", "''")
            statements.append(
                "INSERT INTO banish_events (key, kind, jail, addresses, node, banned_at, "
                f"expires_at) VALUES (gen_random_uuid(), 'ban', 'demo', ARRAY[E'{quoted}'], "
                "'X', now(), now() + interval '1 hour');")
        statements.append("INSERT INTO banish_events (key, kind, jail, addresses, node, "
                          "banned_at) VALUES (gen_random_uuid(), 'ban', 'demo', "
                          "ARRAY['10.217.0.8'], 'evil node; rm -rf /', now());")
        lab.sql("\n".join(statements))
        nodes = list(lab.nodes.values())
        for node in nodes:
            wait_for(lambda n=node: "10.217.0.9" in n.kernel(), timeout=15,
                     what=f"{node.name} applying the good row")
            assert node.kernel() == {"10.217.0.9"}
            assert node.fleet()["refused"] == len(HOSTILE) + 1
            assert node.daemon.log_text().count("Fleet: refused a row") == len(HOSTILE) + 1
            metrics = {s.name: s.value for family in text_string_to_metric_families(
                node.daemon.cli("metrics").stdout) for s in family.samples
                if s.name.startswith("banish_fleet_")}
            assert metrics["banish_fleet_refused_addresses_total"] == len(HOSTILE) + 1
            assert metrics["banish_fleet_connected"] == 1
            assert metrics["banish_fleet_outbox_bans"] == 0
        assert not canary.exists()


def test_a_repeat_offender_of_another_node_gets_the_longer_ban(
        pg: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Received bans are in the node's own history (with their origin), so
    ``bantime.increment`` counts a ban made anywhere in the fleet."""
    extra = "bantime = 4\nbantime.increment = true\n"
    with fleet_lab(pg, tmp_path, monkeypatch, {"A": extra, "B": extra}) as lab:
        a, b = lab.nodes["A"], lab.nodes["B"]
        repeat, fresh = lab.address(21), lab.address(22)
        a.fail(repeat)
        wait_for(lambda: repeat in b.kernel(), timeout=10, what="A's ban on B")
        wait_for(lambda: all(f"Unban {repeat}" in n.daemon.log_text() for n in (a, b)),
                 timeout=15, what="the first ban over everywhere")
        b.fail(repeat)
        b.fail(fresh)

        def own_bans() -> dict[str, int]:
            with closing(sqlite3.connect(b.daemon.db)) as db:
                return dict(db.execute("SELECT address, bantime FROM ban_history "
                                       "WHERE origin = '' AND address IN (?, ?)",
                                       [repeat, fresh]).fetchall())

        bantimes = wait_for(lambda: len(own_bans()) == 2 and own_bans(), timeout=10,
                            what="B's own bans")
        assert bantimes[fresh] == 4
        assert bantimes[repeat] == 8  # banned once before, on A: twice as long
