"""fail2ban-client habits against the real daemon: ``run --socket``, ``get JAIL banip
--with-time``, ``reload [--unban] [JAIL]``, ``get``/``set loglevel``, daemon settings,
``addignoreip``/``delignoreip`` and the jail parameters fail2ban-client can read.

Each test runs ``banish run`` on files in a temporary directory with the null (log-only)
firewall and drives it through the real CLI; every wait is a bounded poll for an event.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, wait_for

DEFAULTS = """
[DEFAULT]
maxretry = 3
findtime = 10m
bantime = 1h
"""


def section(name: str, **options: str) -> str:
    """An enabled jail's section of jail.conf."""
    return f"[{name}]\nenabled = true\n" + "".join(f"{k} = {v}\n" for k, v in options.items())


DEMO = section("demo", filter="demo", action="null", logpath="{logs}/demo.log")
JAILS = DEFAULTS + DEMO + section("forever", filter="demo", action="null",
                                  logpath="{logs}/forever.log", bantime="-1")
ONE_JAIL = DEFAULTS + DEMO


def value(d: Daemon, *argv: str) -> Any:
    """The ``value`` of a ``get``/``set`` answer, through ``--json``."""
    return json.loads(d.cli(*argv, "--json").stdout)["value"]


def refused(d: Daemon, *argv: str) -> str:
    """A usage error: exit status 2, nothing on stdout, one line on stderr (returned)."""
    proc = d.cli(*argv, check=False)
    assert (proc.returncode, proc.stdout) == (2, ""), proc
    assert proc.stderr.startswith("banish: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def failed(d: Daemon, jail: str) -> int:
    return int(d.status(jail)["total_failed"])


# -- banish run --socket --------------------------------------------------------------------

@pytest.mark.parametrize("where", ["before the verb", "after the verb"])
def test_run_takes_socket_before_or_after_the_verb(tmp_path: Path, where: str) -> None:
    with Daemon(tmp_path, ONE_JAIL) as d:
        chosen = tmp_path / "chosen.sock"
        option = ["--socket", str(chosen)]
        argv = [*option, "run"] if where == "before the verb" else ["run", *option]
        env = {k: v for k, v in os.environ.items() if k != "BANISH_SOCKET"}
        with open(tmp_path / "stderr.txt", "ab") as err:
            d.proc = subprocess.Popen([sys.executable, "-m", "banish.cli.main", *argv,
                                       "--config", str(d.cfg)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: "banish is ready" in d.log_text() or d.proc_died(), what="readiness")
        assert not d.proc_died(), d.stderr()
        assert not d.socket.exists()  # banish.conf's socket is overridden, in either place
        ping = subprocess.run([sys.executable, "-m", "banish.cli.main", "ping", *option],
                              capture_output=True, text=True, timeout=30, check=False)
        assert (ping.returncode, ping.stdout) == (0, "pong\n")
        d.stop()
        assert not chosen.exists()


# -- get JAIL banip [--with-time] -----------------------------------------------------------

_WITH_TIME = re.compile(r"(?P<ip>\S+) \t(?P<start>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+ "
                        r"(?P<bantime>-?\d+) = (?P<end>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def _epoch(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def test_get_banip_prints_fail2ban_clients_lines(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        assert d.cli("get", "demo", "banip").stdout == ""
        before = int(time.time())
        d.cli("ban", "demo", "192.0.2.10")
        d.cli("set", "demo", "banip", "2001:db8::/64")
        d.cli("ban", "forever", "192.0.2.11")
        assert d.cli("get", "demo", "banip").stdout == "192.0.2.10 2001:db8::/64\n"
        lines = d.cli("get", "demo", "banip", "--with-time").stdout.splitlines()
        assert [m["ip"] for m in map(_WITH_TIME.fullmatch, lines) if m] == \
            ["192.0.2.10", "2001:db8::/64"]
        for line in lines:
            m = _WITH_TIME.fullmatch(line)
            assert m is not None and m["bantime"] == "3600"
            assert before <= _epoch(m["start"]) <= time.time()
            assert _epoch(m["end"]) - _epoch(m["start"]) == 3600
        forever = d.cli("get", "forever", "banip", "--with-time").stdout
        m = _WITH_TIME.fullmatch(forever.rstrip("\n"))
        assert m is not None and (m["ip"], m["bantime"], m["end"]) == \
            ("192.0.2.11", "-1", "9999-12-31 23:59:59")
        # --json is the daemon's answer, the same rows 'banned' gives
        rows = json.loads(d.cli("get", "demo", "banip", "--with-time", "--json").stdout)
        assert [r["ip"] for r in rows] == ["192.0.2.10", "2001:db8::/64"]
        assert all(r["bantime"] == 3600 for r in rows)
        assert "no such jail: 'nope'" in refused(d, "get", "nope", "banip")
        assert "--with-time goes with 'get JAIL banip'" in refused(
            d, "get", "demo", "maxretry", "--with-time")
        d.stop()


# -- reload [--unban] [JAIL] ----------------------------------------------------------------

def _banned(d: Daemon) -> set[tuple[str, str]]:
    return {(r["jail"], r["ip"]) for r in json.loads(d.cli("banned", "--json").stdout)}


def test_reload_unban_lifts_bans_of_the_jail_or_of_all(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        d.cli("ban", "demo", "192.0.2.20", "192.0.2.21")
        d.cli("ban", "forever", "192.0.2.22")
        d.cli("reload")  # plain reload keeps every ban
        assert len(_banned(d)) == 3
        # a refused reload (banish.conf broken) lifts nothing
        conf = d.cfg / "banish.conf"
        good = conf.read_text()
        conf.write_text(good + "dbpurgeage = soon\n")
        assert "reload refused" in refused(d, "reload", "--unban")
        assert "reload refused" in refused(d, "reload", "demo", "--unban")
        assert len(_banned(d)) == 3
        conf.write_text(good)
        # reload JAIL --unban: that jail's bans only
        d.cli("reload", "--unban", "demo")
        assert _banned(d) == {("forever", "192.0.2.22")}
        assert sorted(d.bans("Unban")) == ["192.0.2.20", "192.0.2.21"]
        d.cli("ban", "demo", "192.0.2.23")
        # reload --unban: every ban, and the jails keep running
        out = d.cli("reload", "--unban").stdout
        assert out == "reloaded; jails: demo, forever\n"
        assert _banned(d) == set()
        d.fail("demo.log", "192.0.2.24", 3)
        wait_for(lambda: ("demo", "192.0.2.24") in _banned(d), what="a ban after the reload")
        d.stop()


# -- daemon settings: get/set loglevel, get logtarget|dbfile|dbpurgeage ----------------------

def test_loglevel_changes_at_run_time_until_the_next_reload(tmp_path: Path) -> None:
    with Daemon(tmp_path, ONE_JAIL) as d:
        d.start()
        assert d.cli("get", "loglevel").stdout == "INFO\n"
        assert d.cli("set", "loglevel", "notice").stdout == "NOTICE\n"
        assert value(d, "get", "loglevel") == "NOTICE"
        assert "Log level set to NOTICE" in d.log_text()
        d.fail("demo.log", "192.0.2.30", 3)
        wait_for(lambda: "192.0.2.30" in d.bans(), what="ban (NOTICE)")
        assert "Found 192.0.2.30" not in d.log_text()  # INFO is below NOTICE now
        assert d.cli("set", "loglevel", "20").stdout == "INFO\n"  # numbers, as fail2ban
        d.fail("demo.log", "192.0.2.31", 3)
        wait_for(lambda: "192.0.2.31" in d.bans(), what="ban (INFO)")
        assert "Found 192.0.2.31" in d.log_text()
        assert "invalid log level 'LOUD'" in refused(d, "set", "loglevel", "LOUD")
        assert "invalid log level '²'" in refused(d, "set", "loglevel", "²")
        assert value(d, "set", "loglevel", "ERROR") == "ERROR"
        d.cli("reload")  # banish.conf says nothing: back to INFO, as fail2ban's reload does
        assert d.cli("get", "loglevel").stdout == "INFO\n"
        d.stop()


def test_daemon_settings_are_readable_and_read_only(tmp_path: Path) -> None:
    with Daemon(tmp_path, ONE_JAIL) as d:
        d.start()
        assert d.cli("get", "logtarget").stdout == f"{d.log}\n"
        assert d.cli("get", "dbfile").stdout == f"{d.db}\n"
        assert d.cli("get", "dbpurgeage").stdout == "86400\n"
        assert d.cli("get", "dbpurgeage", "--json").stdout.split() == \
            ["{", '"jail":', "null,", '"param":', '"dbpurgeage",', '"value":', "86400", "}"]
        assert "set dbfile: read-only at run time" in refused(d, "set", "dbfile", "/tmp/x")
        assert "get nope: expected JAIL PARAM, or a daemon setting" in refused(d, "get", "nope")
        d.stop()


# -- set JAIL addignoreip / delignoreip -----------------------------------------------------

def test_ignore_list_changes_at_run_time_and_keeps_failure_windows(tmp_path: Path) -> None:
    with Daemon(tmp_path, ONE_JAIL.replace("bantime = 1h", "bantime = 1h\nignoreip = 10.0.0.0/8")
                ) as d:
        d.start()
        d.fail("demo.log", "192.0.2.40", 2)
        d.fail("demo.log", "192.0.2.41", 2)
        wait_for(lambda: failed(d, "demo") == 4, what="four failures counted")
        out = d.cli("set", "demo", "addignoreip", "192.0.2.40", "localhost").stdout
        assert out == "10.0.0.0/8\n192.0.2.40/32\nlocalhost\n"
        assert value(d, "get", "demo", "ignoreip") == ["10.0.0.0/8", "192.0.2.40/32",
                                                       "localhost"]
        # ignored now; the other address's window was kept: its third failure bans
        d.fail("demo.log", "192.0.2.40", 3)
        d.fail("demo.log", "192.0.2.41", 1)
        wait_for(lambda: "192.0.2.41" in d.bans(), what="ban on the kept window")
        wait_for(lambda: "Ignore 192.0.2.40" in d.log_text(), what="the ignore line")
        assert "192.0.2.40" not in d.bans()
        # adding what is listed changes nothing; removing what is not is refused
        assert value(d, "set", "demo", "addignoreip", "192.0.2.40") == \
            ["10.0.0.0/8", "192.0.2.40/32", "localhost"]
        assert "not in the jail's ignore list: 192.0.2.99/32" in refused(
            d, "set", "demo", "delignoreip", "192.0.2.99")
        assert "invalid address, network or host name 'bad_name!'" in refused(
            d, "set", "demo", "addignoreip", "bad_name!")
        # removed again: its two failures from before the ignore still count
        assert d.cli("set", "demo", "delignoreip", "192.0.2.40", "localhost").stdout == \
            "10.0.0.0/8\n"
        d.fail("demo.log", "192.0.2.40", 1)
        wait_for(lambda: "192.0.2.40" in d.bans(), what="ban after delignoreip")
        # a reload goes back to the configuration's list
        d.cli("set", "demo", "addignoreip", "192.0.2.42")
        d.cli("reload")
        assert value(d, "get", "demo", "ignoreip") == ["10.0.0.0/8"]
        d.stop()


# -- get JAIL actions|datepattern|journalmatch|maxmatches, whole numbers --------------------

DATED = """[Definition]
failregex = ^\\s*login failed for \\S+ from <HOST>$
datepattern = {^LN-BEG}%%Y-%%m-%%d %%H:%%M:%%S
[Init]
journalmatch = _SYSTEMD_UNIT=demo.service + _COMM=demo
"""

SCRIPTED = DEFAULTS + DEMO + section("dated", filter="dated", action="note",
                                     logpath="{logs}/dated.log", maxmatches="5", findtime="0.5")

NOTE = """[Definition]
actionban = true
actionunban = true
"""


def test_get_reads_jail_parameters_as_fail2ban_client(tmp_path: Path) -> None:
    with Daemon(tmp_path, SCRIPTED, filters={"dated": DATED}) as d:
        (d.cfg / "action.d").mkdir()
        (d.cfg / "action.d" / "note.conf").write_text(NOTE)
        d.start()
        assert value(d, "get", "demo", "actions") == ["null"]
        assert value(d, "get", "dated", "actions") == ["note"]
        assert d.cli("get", "dated", "datepattern").stdout == \
            "{^LN-BEG}%Y-%m-%d %H:%M:%S\n"
        assert value(d, "get", "demo", "datepattern") is None
        assert d.cli("get", "demo", "datepattern").stdout == ""
        # fail2ban-client prints alternatives joined by ' + ', as they are written
        assert d.cli("get", "dated", "journalmatch").stdout == \
            "_SYSTEMD_UNIT=demo.service + _COMM=demo\n"
        assert value(d, "get", "demo", "journalmatch") == []
        assert value(d, "get", "dated", "maxmatches") == 5
        assert value(d, "get", "demo", "maxmatches") == 3  # maxretry's, as jail.conf says
        # whole numbers print as fail2ban prints them, in --json as well; fractions stay
        for argv, shown in ((["get", "demo", "findtime"], "600"),
                            (["get", "demo", "bantime"], "3600"),
                            (["set", "demo", "bantime", "2h"], "7200"),
                            (["set", "demo", "findtime", "90"], "90"),
                            (["set", "demo", "bantime", "-1"], "-1"),
                            (["get", "dated", "findtime"], "0.5")):
            assert d.cli(*argv).stdout == shown + "\n", argv
            assert f'"value": {shown}\n' in d.cli(*argv, "--json").stdout, argv
        assert "unknown parameter 'nope'" in refused(d, "get", "demo", "nope")
        d.stop()
