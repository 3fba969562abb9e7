"""The ban event stream through the real daemon: action.d scripts get every ban, restore, unban
and expiry once, after the ban is recorded; a slow script delays neither the ban nor the
answers, and shows in ``status``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.integration.daemon import Daemon, wait_for

# An action that only writes what it was told: operation, address, restored flag.
RECORD_ACTION = """[Definition]
actionstart = echo start >> {out}
actionstop = echo stop >> {out}
actionban = {sleep}echo "ban <ip> restored=<restored> failures=<failures>" >> {out}
actionunban = echo "unban <ip>" >> {out}
"""

JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = null
         record
maxretry = 2
findtime = 1h
bantime = %s
"""


def setup(d: Daemon, sleep: str = "") -> Path:
    out = d.root / "actions.txt"
    (d.cfg / "action.d").mkdir(exist_ok=True)
    (d.cfg / "action.d" / "record.conf").write_text(
        RECORD_ACTION.format(out=out, sleep=sleep))
    return out


def lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def test_scripts_get_ban_restore_unban_and_expiry_once_each(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS % "1h") as d:
        out = setup(d)
        d.start()
        d.fail("a.log", "198.51.100.11", 2)
        d.cli("ban", "demo", "198.51.100.12")
        wait_for(lambda: len([x for x in lines(out) if x.startswith("ban")]) == 2,
                 what="two bans run")
        d.stop()
        assert lines(out)[-1] == "stop"
        d.start()  # the bans come back from the store as restored tickets
        wait_for(lambda: lines(out).count("ban 198.51.100.11 restored=1 failures=0") == 1,
                 what="restored ban")
        d.cli("unban", "198.51.100.12")
        wait_for(lambda: "unban 198.51.100.12" in lines(out), what="unban script")
        d.stop()
        # fail2ban's lifecycle: an action without actionflush unbans each ban at its stop.
        assert lines(out) == [
            "start", "ban 198.51.100.11 restored=0 failures=2",
            "ban 198.51.100.12 restored=0 failures=0",
            "unban 198.51.100.11", "unban 198.51.100.12", "stop",
            "start", "ban 198.51.100.11 restored=1 failures=0",
            "ban 198.51.100.12 restored=1 failures=0",
            "unban 198.51.100.12",  # by hand, once
            "unban 198.51.100.11", "stop"]
    with Daemon(tmp_path / "expiry", JAILS % "2s") as d:
        out = setup(d)
        d.start()
        d.fail("a.log", "198.51.100.13", 2)
        wait_for(lambda: "unban 198.51.100.13" in lines(out), timeout=20, what="expiry unban")
        d.stop()


def test_a_slow_script_delays_neither_the_ban_nor_the_answers(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS % "1h") as d:
        out = setup(d, sleep="sleep 3; ")
        d.start()
        started = time.monotonic()
        d.cli("ban", "demo", "198.51.100.21", "198.51.100.22")
        d.cli("ban", "demo", "198.51.100.23")
        banned = {r["ip"] for r in json.loads(d.cli("banned", "--json").stdout)}
        assert banned == {"198.51.100.21", "198.51.100.22", "198.51.100.23"}
        (sub,) = [s for s in json.loads(d.cli("status", "--json").stdout)["subscribers"]
                  if s["name"] == "action.d"]  # (enrich, metrics... subscribe too)
        assert time.monotonic() - started < 2.5  # answered while the first script sleeps
        assert sub["name"] == "action.d" and sub["queued"] >= 1 and sub["lag"] > 0
        assert not [x for x in lines(out) if x.startswith("ban")]
        wait_for(lambda: len([x for x in lines(out) if x.startswith("ban")]) == 3,
                 timeout=30, what="the slow scripts")
        (sub,) = [s for s in json.loads(d.cli("status", "--json").stdout)["subscribers"]
                  if s["name"] == "action.d"]
        assert sub["queued"] == 0 and sub["errors"] == 0
        d.stop()
