"""No lost failure: the real daemon, stopped or killed between an address's failures, counts
each failure of the last findtime exactly once after it restarts.

Failure windows live in memory only; at start each source replays the lines logged within
findtime before its stored position (file offset or journal cursor) and then goes on at that
position. So an address with maxretry - 1 failures before the stop and one after is banned, and
one with maxretry - 1 before and none after is not, however often the daemon restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, wait_for
from tests.integration.test_daemon import JOURNAL_JAILS
from tests.integration.test_sources_journal import Journal, needs_journal

FILE_JAILS = """
[demo]
enabled = true
filter = demo
action = null
logpath = {logs}/a.log
maxretry = 3
findtime = 1h
bantime = 1h
"""

JDEMO = "[Definition]\nfailregex = login failed for \\S+ from <HOST>$\n"

A, B, C = "198.51.100.21", "198.51.100.22", "198.51.100.23"

Write = Callable[[str, int], None]


def stored(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of the daemon's store, read while it runs (WAL); none while it cannot be read."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def _restart(d: Daemon, how: str) -> None:
    if how == "kill9":
        d.kill9()
    else:
        d.stop()
    d.start()


def _scenario(d: Daemon, write: Write, saved: Callable[[], bool], how: str,
              jail: str = "demo") -> None:
    d.start()
    write(A, 2)
    write(B, 2)
    # Both counted and the position after them stored: the restart resumes behind them.
    wait_for(lambda: d.status(jail)["total_failed"] == 4 and saved(), what="4 failures read")
    _restart(d, how)
    write(A, 1)
    wait_for(lambda: A in d.bans(), what="A banned by its third failure, after the restart")
    st = d.status(jail)
    assert B not in d.bans()
    # Each line once: A's and B's two replayed, A's one new; B alone is still counted.
    assert (st["total_failed"], st["currently_failed"]) == (5, 1), st
    _restart(d, how)
    write(C, 3)
    wait_for(lambda: C in d.bans(), what="C banned after the second restart")
    st = d.status(jail)
    assert B not in d.bans(), "B's two failures were counted twice"
    # A's replayed lines are skipped (A is banned, restored at start): B's 2 + C's 3.
    assert (st["total_failed"], st["currently_failed"]) == (5, 1), st
    assert sorted(d.bans()) == [A, C]  # and the restored ban of A is not made again
    d.stop()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_file_failures_before_a_restart_count_once(tmp_path: Path, how: str) -> None:
    with Daemon(tmp_path, FILE_JAILS) as d:
        log = d.logs / "a.log"
        log.touch()

        def write(ip: str, n: int) -> None:
            d.fail("a.log", ip, n)

        def saved() -> bool:
            rows = stored(d.db, "select offset from file_positions")
            return rows == [(log.stat().st_size,)]

        _scenario(d, write, saved, how)


def _last_cursor(directory: Path) -> str | None:
    from systemd import journal  # the binding; needs_journal checked it is there

    reader = journal.Reader(path=str(directory))
    try:
        reader.seek_tail()
        entry = reader.get_previous()
        return None if not entry else str(entry["__CURSOR"])
    finally:
        reader.close()


@needs_journal
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_journal_failures_before_a_restart_count_once(tmp_path: Path, how: str) -> None:
    journal = Journal(tmp_path / "journal")
    journal.write({"SYSLOG_IDENTIFIER": "other", "MESSAGE": "the journal exists"})
    jails = JOURNAL_JAILS.replace("{journal}", str(journal.dir))
    # The journal's entries are dated an hour back: the jail's findtime of 3h holds them.
    with Daemon(tmp_path, jails, filters={"jdemo": JDEMO}) as d:

        def write(ip: str, n: int) -> None:
            entry = {"SYSLOG_IDENTIFIER": "jdemo", "_PID": "7", "_HOSTNAME": "h",
                     "MESSAGE": f"login failed for root from {ip}"}
            journal.write(*[entry] * n)

        def saved() -> bool:
            rows = stored(d.db, "select cursor from journal_cursors")
            return rows == [(_last_cursor(journal.dir),)]

        _scenario(d, write, saved, how, jail="jdemo")


def test_a_jail_restarted_by_reload_rebuilds_its_windows(tmp_path: Path) -> None:
    with Daemon(tmp_path, FILE_JAILS) as d:
        d.start()
        d.fail("a.log", A, 2)
        d.fail("a.log", B, 2)
        wait_for(lambda: d.status("demo")["total_failed"] == 4, what="4 failures read")
        d.write_jails(FILE_JAILS.replace("bantime = 1h", "bantime = 2h"))  # a changed jail
        d.cli("reload")
        d.fail("a.log", A, 1)
        wait_for(lambda: A in d.bans(), what="A banned by its third failure, after the reload")
        st = d.status("demo")
        assert B not in d.bans()
        assert (st["total_failed"], st["currently_failed"]) == (5, 1), st
        d.stop()
