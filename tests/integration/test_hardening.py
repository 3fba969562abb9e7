"""Issue 9's smaller findings against the real daemon: a flood does not write a log line per
failure, a ban a crash cut off from the log is logged when restored, a missing log file is
said loudly and shown in status, and the tracker's caps are jail options."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.daemon import Daemon, stamp, wait_for

JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = null
maxretry = 3
findtime = 1h
bantime = 1h
"""


def test_a_flood_of_failures_is_logged_as_a_count(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        t = stamp()
        d.append("a.log", *(f"{t} login failed for x from 198.18.{i // 250}.{i % 250 + 1}"
                            for i in range(2000)))
        wait_for(lambda: d.status("demo")["total_failed"] == 2000, what="2000 failures")
        wait_for(lambda: "more failures in the last" in d.log_text(), timeout=20,
                 what="the count line")
        text = d.log_text()
        assert text.count("] Found 198.18.") == 100
        assert "Found 1900 more failures in the last" in text
        d.stop()


def test_restored_bans_are_logged_so_a_crash_cannot_hide_one(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        d.cli("ban", "demo", "198.51.100.31")
        d.kill9()
        d.start()
        assert "[demo] Restore Ban 198.51.100.31" in d.log_text()
        d.stop()


def test_a_missing_log_file_is_said_loudly_shown_and_picked_up(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        wait_for(lambda: "does not exist" in d.log_text(), what="the warning")
        assert "this jail protects nothing from it until it appears" in d.log_text()
        status = json.loads(d.cli("status", "--json").stdout)
        assert status["file_errors"][0]["jail"] == "demo"
        assert "Problems" in d.cli("status").stdout
        d.fail("a.log", "198.51.100.32", 3)  # the file appears
        wait_for(lambda: "198.51.100.32" in d.bans(), what="a ban from the late file")
        d.stop()


def test_a_replay_does_not_undo_an_unban_by_hand(tmp_path: Path) -> None:
    """The failures a ban used are not counted again by the replay at the next start, so an
    address unbanned by hand stays unbanned; new failures still count."""
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        d.fail("a.log", "198.51.100.41", 3)
        wait_for(lambda: "198.51.100.41" in d.bans(), what="the ban")
        d.cli("unban", "198.51.100.41")
        d.stop()
        d.start()
        d.fail("a.log", "198.51.100.42", 3)  # a marker: the replay and these are done
        wait_for(lambda: "198.51.100.42" in d.bans(), what="the marker's ban")
        assert d.bans().count("198.51.100.41") == 1
        assert not json.loads(d.cli("banned", "198.51.100.41", "--json", check=False).stdout)
        d.fail("a.log", "198.51.100.41", 3)
        wait_for(lambda: d.bans().count("198.51.100.41") == 2, what="a ban for new failures")
        d.stop()


def test_a_numeric_host_name_is_not_turned_into_an_address(tmp_path: Path) -> None:
    """getaddrinfo("3405803785") is 203.0.113.9 without any DNS query: a name like that in a
    log line is the attacker's text, not a server's PTR lookup."""
    with Daemon(tmp_path, JAILS.replace("maxretry = 3", "maxretry = 1\nusedns = yes")) as d:
        d.start()
        d.append("a.log", f"{stamp()} login failed for x from 3405803785")
        wait_for(lambda: "resolves to an address without DNS" in d.log_text(),
                 what="the refusal")
        d.fail("a.log", "198.51.100.43", 1)
        wait_for(lambda: "198.51.100.43" in d.bans(), what="the marker's ban")
        assert "203.0.113.9" not in d.bans()
        d.stop()


def test_a_forged_line_is_not_read_and_is_said(tmp_path: Path) -> None:
    """fail2ban's own sshd filter (the installed file, copied into the test's config) reads a
    user name that imitates sshd's "from <address> port <n> ssh2: <key>" as the client; the
    daemon reads such a line not at all and says so in its log (banish.match.forgery)."""
    import shutil
    import time

    import pytest

    if not Path("/etc/fail2ban/filter.d/sshd.conf").exists():
        pytest.skip("Debian's fail2ban package is not installed")
    jails = JAILS.replace("filter = demo", "filter = sshd").replace("a.log", "auth.log")
    with Daemon(tmp_path, jails) as d:
        for name in ("sshd.conf", "common.conf"):
            shutil.copy(f"/etc/fail2ban/filter.d/{name}", d.cfg / "filter.d" / name)
        (d.logs / "auth.log").touch()  # a file to read (else backend = auto takes the journal)
        d.start()
        t = time.strftime("%b %d %H:%M:%S")
        forged = (f"{t} host sshd[42]: Failed password for invalid user x from 203.0.113.9 "
                  "port 22 ssh2: RSA y from 198.51.100.51 port 4242 ssh2")
        d.append("auth.log", forged, forged, forged)
        d.append("auth.log", *(f"{t} host sshd[43]: Failed password for root from "
                               "198.51.100.52 port 4242 ssh2" for _ in range(3)))
        wait_for(lambda: "198.51.100.52" in d.bans(), what="the plain failures' ban")
        wait_for(lambda: "3 forged line(s) not read" in d.log_text(), what="the warning")
        assert "203.0.113.9" not in d.bans()
        assert d.status("demo")["total_failed"] == 3
        d.stop()
