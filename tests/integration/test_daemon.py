"""The real daemon follows real files and keeps its bans through rotation, restarts and kill -9.

Each test runs ``banish run`` as a subprocess with a config in a temporary directory and the
null (log-only) firewall; bans are read back from banish's own log (the lines recidive reads)
and from the store. Timers are short (bantime of seconds) and every wait is a bounded poll
for an event, never a sleep standing in for logic.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, stamp, wait_for
from tests.integration.test_sources_journal import Journal, needs_journal

JAILS = """
[DEFAULT]
action = null
[demo]
enabled = true
filter = demo
logpath = {logs}/*.log
maxretry = 3
findtime = 1m
bantime = %s
"""


def test_append_rotate_both_ways_glob_and_release(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS % "3") as d:
        d.start()
        d.fail("a.log", "198.18.0.1", 3)
        wait_for(lambda: "198.18.0.1" in d.bans(), what="ban after append")
        # rotation by rename + create
        os.rename(d.logs / "a.log", d.logs / "a.log.1")
        d.fail("a.log", "198.18.0.2", 3)
        wait_for(lambda: "198.18.0.2" in d.bans(), what="ban after rename rotation")
        # rotation by copytruncate
        shutil.copy(d.logs / "a.log", d.logs / "a.log.2")
        with open(d.logs / "a.log", "r+b") as fh:
            fh.truncate(0)
        d.fail("a.log", "198.18.0.3", 3)
        wait_for(lambda: "198.18.0.3" in d.bans(), what="ban after copytruncate")
        # a file matching the glob that appears later
        d.fail("b.log", "198.18.0.4", 3)
        wait_for(lambda: "198.18.0.4" in d.bans(), what="ban from a file created later")
        # below maxretry: never banned
        d.fail("b.log", "198.18.0.5", 2)
        wait_for(lambda: set(d.bans("Unban")) >= {"198.18.0.1", "198.18.0.2", "198.18.0.3",
                                                  "198.18.0.4"}, what="releases after bantime")
        assert sorted(d.bans()) == ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"]
        assert sorted(d.bans("Unban")) == sorted(d.bans())
        d.stop()


def test_restart_resumes_where_it_stopped(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS % "1h") as d:
        d.start()
        d.fail("a.log", "198.51.100.6", 2)
        d.fail("a.log", "198.51.100.7", 3)
        wait_for(lambda: "198.51.100.7" in d.bans(), what="first ban")
        d.stop()
        d.fail("a.log", "198.51.100.6", 1)  # written while banish is down
        d.start()
        # The two failures before the stop are replayed (issue 9: windows survive a restart)
        # and the one written while down is read once: three. The ban of .7 is restored, not
        # repeated (its failures were used by that ban).
        wait_for(lambda: "198.51.100.6" in d.bans(), what="ban across the restart")
        d.fail("a.log", "198.51.100.8", 3)
        wait_for(lambda: "198.51.100.8" in d.bans(), what="ban after restart")
        assert sorted(d.bans()) == ["198.51.100.6", "198.51.100.7", "198.51.100.8"]
        assert "Restored 1 active ban(s)" in d.log_text()
        d.stop()


def _active(db: Path) -> dict[str, tuple[float, float | None]]:
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        table = "active_bans" if "active_bans" in tables else "active"
        rows = con.execute(f"select address, banned_at, expires_at from {table}").fetchall()
    return {a: (b, e) for a, b, e in rows}


def test_kill9_during_a_burst_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    ips = [f"203.0.113.{i}" for i in range(1, 201)]
    with Daemon(tmp_path, JAILS % "1h") as d:
        d.start()
        t = stamp()
        d.append("a.log", *[f"{t} login failed for root from {ip}" for ip in ips for _ in range(3)])
        wait_for(lambda: len(d.bans()) >= 20, what="some bans reported")
        d.kill9()
        reported = set(d.bans())
        active = _active(d.db)
        assert reported <= set(active), "a reported ban is missing from the store"
        d.start()
        # Bans committed just before the kill but not yet logged are restored, not repeated:
        # wait on the store, then check the log never reports an address twice.
        wait_for(lambda: len(_active(d.db)) == len(ips), what="all bans after restart")
        bans = d.bans()
        assert len(bans) == len(set(bans)), "a ban was reported twice"
        after = _active(d.db)
        assert set(after) == set(ips)
        for ip in reported:  # re-applied with the same end, i.e. their remaining time
            assert after[ip] == active[ip]
            assert after[ip][1] is not None and after[ip][1] - after[ip][0] == 3600
        d.stop()


def test_broken_reload_keeps_old_config_and_bans(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS % "1h") as d:
        d.start()
        d.fail("a.log", "198.18.0.77", 3)
        wait_for(lambda: "198.18.0.77" in d.bans(), what="ban")
        d.write_jails((JAILS % "1h").replace("maxretry = 3", "maxretry = lots"))
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "still running its previous configuration" in d.log_text(),
                 what="refused reload of the jail")
        assert "maxretry" in d.log_text()
        d.fail("a.log", "198.18.0.78", 3)  # the old configuration still works
        wait_for(lambda: "198.18.0.78" in d.bans(), what="ban with the old config")
        assert "198.18.0.77" not in d.bans("Unban")
        d.stop()


@pytest.mark.parametrize(("change", "expect"), [
    (("filter = demo", "filter = nosuch"), "[demo] filter: unknown filter 'nosuch'"),
    (("bantime = 1h", "bantime = 1 fortnight"), "[demo] bantime:"),
    (("action = null", "action = null\nignoreip = 192.0.2.0/33"), "ignoreip:"),
    (("logpath = {logs}/*.log", ""), "[demo] logpath: no logpath given"),
])
def test_bad_jail_options_exit_2_with_one_line(tmp_path: Path, change: tuple[str, str],
                                               expect: str) -> None:
    d = Daemon(tmp_path, (JAILS % "1h").replace(*change))
    proc = subprocess.run([sys.executable, "-m", "banish.cli.main", "run", "--config",
                           str(d.cfg)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert expect in proc.stderr and "jail.conf" in proc.stderr, proc.stderr


NO_DAC = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
          "-dac_override,-dac_read_search")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to make a file unreadable to the daemon")
def test_unreadable_file_is_reported_in_status_not_fatal(tmp_path: Path) -> None:
    jails = (JAILS % "1h").replace("logpath = {logs}/*.log",
                                   "logpath = {logs}/a.log\n          {logs}/secret.log")
    with Daemon(tmp_path, jails) as d:
        d.fail("secret.log", "198.18.1.1", 3)
        os.chmod(d.logs / "secret.log", 0)
        os.chown(d.logs / "secret.log", 65534, 65534)
        d.start(prefix=NO_DAC)
        status = wait_for(lambda: (s := d.status("demo"))["file_errors"] and s,
                          what="file error in status")
        assert any("secret.log" in e["path"] and "ermission" in e["message"]
                   for e in status["file_errors"]), status
        d.fail("a.log", "198.18.1.2", 3)  # the readable file still works
        wait_for(lambda: "198.18.1.2" in d.bans(), what="ban from the readable file")
        assert "198.18.1.1" not in d.bans()
        d.stop()


def test_control_verbs_and_reload_against_the_daemon(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS % "1h") as d:
        d.start()
        assert d.cli("ping").returncode == 0
        d.fail("a.log", "198.18.2.1", 3)
        wait_for(lambda: "198.18.2.1" in d.bans(), what="ban")
        status = d.status("demo")
        assert status["jail"] == "demo" and status["currently_banned"] == 1
        assert status["banned"] == ["198.18.2.1"] and status["total_failed"] == 3
        assert status["files"] == [str(d.logs / "a.log")]
        d.cli("ban", "demo", "198.18.2.2", "2001:db8:77::/64")
        d.cli("set", "demo", "banip", "198.18.2.3")  # fail2ban-client spelling
        banned = {r["ip"] for r in json.loads(d.cli("banned", "--json").stdout)}
        assert banned == {"198.18.2.1", "198.18.2.2", "198.18.2.3", "2001:db8:77::/64"}
        d.cli("unban", "198.18.2.2")
        assert "198.18.2.2" in d.bans("Unban")
        # a broken jail is refused (exit 2, one line) and keeps running as it was
        d.write_jails((JAILS % "1h").replace("maxretry = 3", "maxretry = lots"))
        proc = d.cli("reload", check=False)
        assert proc.returncode == 2 and "maxretry" in proc.stderr
        assert proc.stderr.count("\n") == 1
        assert "still running its previous configuration" in proc.stderr
        assert json.loads(d.cli("get", "demo", "maxretry", "--json").stdout)["value"] == 3
        assert len(json.loads(d.cli("banned", "--json").stdout)) == 3
        # a good config is applied, bans kept
        d.write_jails((JAILS % "1h").replace("maxretry = 3", "maxretry = 2"))
        d.cli("reload")
        assert json.loads(d.cli("get", "demo", "maxretry", "--json").stdout)["value"] == 2
        d.fail("a.log", "198.18.2.4", 2)
        wait_for(lambda: "198.18.2.4" in d.bans(), what="ban with the reloaded maxretry")
        assert len(json.loads(d.cli("banned", "--json").stdout)) == 4
        d.cli("stop")
        assert d.proc is not None
        assert d.proc.wait(15) == 0


JOURNAL_JAILS = """
[jdemo]
enabled = true
filter = jdemo
action = null
backend = systemd[journalpath={journal}]
journalmatch = SYSLOG_IDENTIFIER=jdemo
maxretry = 3
findtime = 3h
bantime = 1d
"""


@needs_journal
def test_daemon_follows_a_real_journal_and_resumes_at_its_cursor(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    entry = {"SYSLOG_IDENTIFIER": "jdemo", "_PID": "7", "_HOSTNAME": "h",
             "MESSAGE": "login failed for root from 198.18.3.1"}
    other = {**entry, "SYSLOG_IDENTIFIER": "other", "MESSAGE": "login failed for x from 198.18.3.2"}
    journal.write(entry, entry, other, other, other)
    jails = JOURNAL_JAILS.replace("{journal}", str(journal.dir))
    filters = {"jdemo": "[Definition]\nfailregex = login failed for \\S+ from <HOST>$\n"}
    with Daemon(tmp_path, jails, filters=filters) as d:
        d.start()
        journal.write(entry)  # appended while the daemon runs
        wait_for(lambda: "198.18.3.1" in d.bans(), what="ban from the journal")
        assert "198.18.3.2" not in d.bans()  # journalmatch keeps other programs out
        d.stop()
        journal.write({**entry, "MESSAGE": "login failed for root from 198.18.3.3"})
        d.start()
        journal.write(*[{**entry, "MESSAGE": "login failed for root from 198.18.3.3"}] * 2)
        wait_for(lambda: "198.18.3.3" in d.bans(), what="ban after restart")
        assert d.bans().count("198.18.3.1") == 1  # the cursor kept old entries from a re-read
        d.stop()


def test_scan_what_if_over_existing_logs(tmp_path: Path) -> None:
    d = Daemon(tmp_path, JAILS % "1h")
    t = stamp()
    d.append("a.log", *[f"{t} login failed for root from 198.18.4.1"] * 4,
             *[f"{t} login failed for root from 198.18.4.2"] * 2, f"{t} all is well")
    other = tmp_path / "other.log"
    other.write_text("".join(f"{t} login failed for x from 198.18.4.9\n" for _ in range(3)))
    proc = subprocess.run([sys.executable, "-m", "banish.cli.main", "scan", "--config",
                           str(d.cfg), "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    assert [(b["jail"], b["ip"], b["failures"]) for b in doc["bans"]] == [
        ("demo", "198.18.4.1", 3)]
    assert doc["bans"][0]["time"] == t.replace(" ", "T")
    (jail,) = doc["jails"]
    assert jail["lines"] == 7 and jail["failures"] == 6 and jail["addresses"] == 2
    assert jail["top"][0] == {"ip": "198.18.4.1", "failures": 4}
    # LOG arguments replace the jail's logpath; --maxretry overrides the jail's
    proc = subprocess.run([sys.executable, "-m", "banish.cli.main", "scan", "--config",
                           str(d.cfg), "--json", "--maxretry", "2", str(other)],
                          capture_output=True, text=True, check=True)
    assert [b["ip"] for b in json.loads(proc.stdout)["bans"]] == ["198.18.4.9"]
    human = subprocess.run([sys.executable, "-m", "banish.cli.main", "scan", "--config",
                            str(d.cfg)], capture_output=True, text=True, check=True).stdout
    assert "Jail demo: 7 lines, 6 failures from 2 addresses, 1 bans" in human


def test_ignorecommand_decides_without_stopping_the_daemon(tmp_path: Path) -> None:
    """fail2ban's ``ignorecommand``: exit 0 ignores the address. A slow command holds back
    only its own failures: the control socket answers meanwhile, and a command that exceeds
    its time (or fails) does not ignore."""
    script = tmp_path / "allowed.sh"
    gate = tmp_path / "gate"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = 198.18.9.2 ] && while [ ! -e {gate} ]; do sleep 0.05; done\n'
        '[ "$1" = 198.18.9.1 ] || [ "$1" = 198.18.9.2 ]\n')
    script.chmod(0o755)
    jails = (JAILS % "1h") + f"ignorecommand = {script} <ip>\n"
    with Daemon(tmp_path, jails) as d:
        d.start()
        d.fail("a.log", "198.18.9.1", 3)  # the command says: ignore
        d.fail("a.log", "198.18.9.3", 3)  # the command says: ban
        wait_for(lambda: "198.18.9.3" in d.bans(), what="the ban the command allowed")
        assert "198.18.9.1" not in d.bans()
        assert "Ignore 198.18.9.1 by" in d.log_text()
        d.fail("a.log", "198.18.9.2", 1)  # its command waits for the gate
        wait_for(lambda: "198.18.9.2" in _processes(script), what="the command to be running")
        # The daemon answers while the command runs (a blocked loop would answer only when
        # the command is killed after 10 s).
        ping = subprocess.run([sys.executable, "-m", "banish.cli.main", "--socket",
                               str(d.socket), "ping"], capture_output=True, timeout=5)
        assert ping.returncode == 0 and "198.18.9.2" in _processes(script)
        gate.touch()
        d.fail("a.log", "198.18.9.2", 2)
        d.fail("a.log", "198.18.9.4", 3)
        wait_for(lambda: "198.18.9.4" in d.bans(), what="a ban after the slow command")
        assert "198.18.9.2" not in d.bans()


def _processes(script: Path) -> str:
    """The command lines of the running processes that run ``script``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(script) in cmdline:
            found.append(cmdline)
    return "\n".join(found)


def test_reload_applies_log_settings_and_keeps_socket_until_restart(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS % "1h") as d:
        d.start()
        moved = tmp_path / "moved.log"
        conf = d.cfg / "banish.conf"
        conf.write_text(conf.read_text()
                        .replace(f"logtarget = {d.log}", f"logtarget = {moved}")
                        .replace(f"socket = {d.socket}", f"socket = {tmp_path / 'other.sock'}")
                        + "loglevel = NOTICE\n")
        d.cli("reload")
        old_size = d.log.stat().st_size
        d.fail("a.log", "198.18.9.7", 3)
        wait_for(lambda: "Ban 198.18.9.7" in moved.read_text() if moved.exists() else False,
                 what="the ban in the new log file")
        text = moved.read_text()
        assert "socket changed to" in text and "next start" in text
        assert "Found 198.18.9.7" not in text  # INFO lines are below NOTICE now
        assert d.log.stat().st_size == old_size  # nothing more in the old file
        assert d.cli("ping").returncode == 0  # still on the socket it started with
