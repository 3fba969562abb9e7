"""One pipeline: the daemon and ``banish scan`` ban the same addresses; config is compiled once
(a change of ``logtimezone`` alone reaches the next failure); a broken jail never stops the
others; the real runtime's status has the documented shape."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from banish.protocol import BANNED_KEYS, JAIL_STATUS_KEYS, STATUS_KEYS, SUMMARY_KEYS
from tests.integration.daemon import Daemon, wait_for

SSHD_LIKE = r"""[Definition]
failregex = ^\s*\S+ sshd\[\d+\]: Failed password for (?:invalid user )?\S+ from <HOST> port \d+
"""

DIFF_JAILS = """
[sshd]
enabled = true
filter = sshlike
logpath = {logs}/auth.log
action = null
maxretry = 3
findtime = 1h
bantime = 3h
banprefix6 = 64
escalate = 3 in 1h
escalate.prefix4 = 24
"""


def syslog(t: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(t))


def generated_log(now: float, seed: int) -> list[str]:
    """The last 50 minutes of an attacked server, yearless dates: bursts, slow drips under
    and over maxretry, IPv6 neighbours in one /64, and four IPv4 neighbours in one /24."""
    rng = random.Random(seed)
    start = now - 50 * 60
    events: list[tuple[float, str]] = []
    for i in range(40):  # scanners: 1-6 failures each, over minutes or the whole span
        ip = f"198.51.{100 + i % 3}.{rng.randrange(1, 250)}"
        first = start + rng.random() * 2400
        spread = rng.choice([20, 600, 2900])
        events += [(first + rng.random() * spread, ip) for _ in range(rng.randrange(1, 7))]
    for host in ("5", "6", "7", "9"):  # neighbours: the /24 is escalated after three bans
        t = start + 600 + rng.random() * 600
        events += [(t + k, f"203.0.113.{host}") for k in range(3)]
    for host in ("a", "b"):  # one /64: the second is inside the first one's ban
        t = start + 1200 + rng.random() * 300
        events += [(t + k * 30, f"2001:db8:77::{host}") for k in range(3)]
    events.sort()
    return [f"{syslog(t)} web sshd[{1000 + n}]: Failed password for root from {ip} port 4242"
            for n, (t, ip) in enumerate(events)]


def test_scan_gives_the_bans_the_daemon_gives_on_one_generated_log(tmp_path: Path) -> None:
    now = time.time()
    with Daemon(tmp_path, DIFF_JAILS, filters={"sshlike": SSHD_LIKE}) as d:
        lines = generated_log(now, seed=8)
        d.append("auth.log", *lines)
        scan = json.loads(d_scan(d, now))
        expected = {(b["jail"], b["ip"]) for b in scan["bans"]}
        d.start()
        wait_for(lambda: len(d.bans()) >= len(expected), what="the daemon's bans")
        time.sleep(0.5)  # nothing more may come: the file was complete before the start
        banned = {(r["jail"], r["ip"]) for r in json.loads(d.cli("banned", "--json").stdout)}
        assert banned == expected
        assert ("sshd", "203.0.113.0/24") in banned  # escalated
        assert ("sshd", "2001:db8:77::/64") in banned  # widened, once
        assert sum(1 for _, ip in banned if ip.startswith("2001:db8:77")) == 1
        d.stop()


def d_scan(d: Daemon, now: float) -> str:
    done = d.cli("scan", "--config", str(d.cfg), "--now", str(now), "--json",
                 str(d.logs / "auth.log"))
    return done.stdout


TZ_JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = null
maxretry = 1
findtime = 1d
bantime = 1d
logtimezone = %s
"""


def test_reload_that_changes_only_logtimezone_changes_the_next_failures_time(
        tmp_path: Path) -> None:
    with Daemon(tmp_path, TZ_JAILS % "UTC") as d:
        d.start()
        wall = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 7200))
        d.append("a.log", f"{wall} login failed for x from 198.51.100.1")
        wait_for(lambda: "198.51.100.1" in d.bans(), what="first ban")
        d.write_jails(TZ_JAILS % "UTC+0100")
        assert d.cli("reload").returncode == 0
        d.append("a.log", f"{wall} login failed for x from 198.51.100.2")
        wait_for(lambda: "198.51.100.2" in d.bans(), what="second ban")
        at = {r["ip"]: r["banned_at"] for r in json.loads(d.cli("banned", "--json").stdout)}
        # The same wall-clock text, read an hour east of UTC, is an hour earlier.
        assert at["198.51.100.1"] - at["198.51.100.2"] == pytest.approx(3600, abs=1)
        d.stop()


TWO_JAILS = """
[good]
enabled = true
filter = demo
logpath = {logs}/a.log
action = null
maxretry = 2

[broken]
enabled = true
filter = nosuchfilter
logpath = {logs}/b.log
action = null
"""


def test_a_broken_jail_is_skipped_and_named_and_the_others_run(tmp_path: Path) -> None:
    with Daemon(tmp_path, TWO_JAILS) as d:
        d.start()
        d.fail("a.log", "192.0.2.7", 2)
        wait_for(lambda: "192.0.2.7" in d.bans(), what="a ban by the good jail")
        status = json.loads(d.cli("status", "--json").stdout)
        assert status["jails"] == ["good"]
        (skipped,) = status["skipped"]
        assert skipped["jail"] == "broken"
        assert f"{d.cfg / 'jail.conf'} [broken] filter:" in skipped["error"]
        assert "nosuchfilter" in skipped["error"]
        human = d.cli("status").stdout
        assert "broken" in human and "nosuchfilter" in human
        refused = d.cli("status", "broken", check=False)
        assert refused.returncode == 2 and "does not run" in refused.stderr
        assert "Jail 'broken' skipped" in d.log_text()
        d.stop()


def test_run_exits_2_when_no_jail_can_start(tmp_path: Path) -> None:
    with Daemon(tmp_path, TWO_JAILS.split("[broken]")[0].replace("filter = demo",
                                                                 "filter = nope")) as d:
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", "banish.cli.main", "run", "--config",
                               str(d.cfg)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and "[good] filter: unknown filter 'nope'" in done.stderr
        assert "No jail could start" in d.log_text()


def test_reload_with_a_typo_keeps_the_running_jail(tmp_path: Path) -> None:
    """Issue 9: a typo in one jail's port refused the reload after stopping jails, and 0 jails
    remained. Now the typo'd jail keeps its running version, the others reload, all ban."""
    jails = TWO_JAILS.split("[broken]")[0] + "port = ssh\n" + """
[other]
enabled = true
filter = demo
logpath = {logs}/b.log
action = null
maxretry = 2
port = http
"""
    with Daemon(tmp_path, jails) as d:
        d.start()
        d.write_jails(jails.replace("port = ssh", "port = ssh,sftpp").replace(
            "maxretry = 2\nport = http", "maxretry = 3\nport = http"))
        done = d.cli("reload", "--json", check=False)
        assert done.returncode == 2  # applied where it could be, and said so
        assert done.stderr.count("\n") == 1 and "sftpp" in done.stderr
        answer = json.loads(done.stdout)
        assert answer["jails"] == ["good", "other"]
        assert "sftpp" in answer["skipped"][0]["error"]
        d.fail("a.log", "192.0.2.8", 2)
        wait_for(lambda: "192.0.2.8" in d.bans(), what="a ban by the kept jail")
        d.fail("b.log", "192.0.2.9", 3)  # the reloaded jail, with its new maxretry
        wait_for(lambda: "192.0.2.9" in d.bans(), what="a ban by the reloaded jail")
        assert json.loads(d.cli("get", "other", "maxretry", "--json").stdout)["value"] == 3
        status = d.status("good")
        assert "still running its previous configuration" in status["reload_error"]
        d.write_jails(jails)
        assert json.loads(d.cli("reload", "--json").stdout)["skipped"] == []
        d.stop()


def test_the_real_runtime_answers_with_the_documented_keys(tmp_path: Path) -> None:
    with Daemon(tmp_path, TWO_JAILS) as d:
        d.start()
        d.fail("a.log", "192.0.2.9", 2)
        wait_for(lambda: "192.0.2.9" in d.bans(), what="a ban")
        status = json.loads(d.cli("status", "--json").stdout)
        assert set(status) == STATUS_KEYS
        assert all(set(row) == SUMMARY_KEYS for row in status["summary"])
        assert {s["name"] for s in status["subscribers"]} == {"action.d", "metrics"}  # enrich: later, by default
        assert set(d.status("good")) == JAIL_STATUS_KEYS
        (row,) = json.loads(d.cli("banned", "--json").stdout)
        assert set(row) == BANNED_KEYS
        d.stop()
