"""``banish import-fail2ban`` on a database written by the real fail2ban (the Debian package).

A ``fail2ban-server`` runs in the foreground on a config generated in a temporary directory:
its own socket, pid file, log and database, a filter written here, and jails without any
action, so it touches no firewall. The test bans addresses through ``fail2ban-client`` with
several bantimes (an IPv6 one, a permanent one, one that expires while the test waits, one
lifted with ``unbanip``), stops the server cleanly, imports, and checks that banish's store
holds exactly the bans still in force, each ending when fail2ban's would have.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pytest

from banish.addr import canonical_address
from banish.paths import packaged_config_dir
from banish.store.sqlite import SqliteStore
from tests.integration.daemon import Daemon, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("fail2ban-server") is None or shutil.which("fail2ban-client") is None,
    reason="fail2ban (the Debian package) is not installed")

# Written here, not copied from fail2ban: the jails never read a log anyway.
_FILTER = "[Definition]\nfailregex = ^probe failure from <HOST>$\n"


class Fail2banServer:
    """The installed fail2ban-server, configured entirely inside ``root``."""

    def __init__(self, root: Path, jails: Sequence[str]) -> None:
        self.conf = root
        (root / "filter.d").mkdir(parents=True, exist_ok=True)
        (root / "filter.d" / "probe.conf").write_text(_FILTER)
        (root / "empty.log").touch()
        self.socket = root / "f2b.sock"
        self.db = root / "fail2ban.sqlite3"
        self.log = root / "fail2ban.log"
        (root / "fail2ban.conf").write_text(
            f"[Definition]\nloglevel = INFO\nlogtarget = {self.log}\nsocket = {self.socket}\n"
            f"pidfile = {root / 'f2b.pid'}\ndbfile = {self.db}\ndbpurgeage = 1d\n")
        # `action =` (none): bans live in fail2ban's memory and database only.
        sections = "".join(f"[{name}]\nenabled = true\n\n" for name in jails)
        (root / "jail.conf").write_text(
            "[DEFAULT]\nbackend = polling\nfilter = probe\n"
            f"logpath = {root / 'empty.log'}\naction =\nbantime = 1h\n\n{sections}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.conf / "stderr.txt", "ab") as err:
            self.proc = subprocess.Popen(
                ["fail2ban-server", "-c", str(self.conf), "-s", str(self.socket), "-p",
                 str(self.conf / "f2b.pid"), "-x", "-f"], stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: self.proc is not None and (self.proc.poll() is not None or self._pong()),
                 30, "fail2ban-server to answer ping")
        assert self.proc.poll() is None, (self.conf / "stderr.txt").read_text()

    def _pong(self) -> bool:
        done = subprocess.run(self._client("ping"), capture_output=True, text=True, timeout=30,
                              check=False)
        return "pong" in done.stdout

    def _client(self, *args: str) -> list[str]:
        return ["fail2ban-client", "-c", str(self.conf), "-s", str(self.socket), *args]

    def client(self, *args: str) -> str:
        return subprocess.run(self._client(*args), capture_output=True, text=True, timeout=30,
                              check=True).stdout

    def rows(self) -> dict[tuple[str | None, str], tuple[int, int]]:
        """fail2ban's ``bips`` as (canonical ip, jail) -> (timeofban, bantime), read-only."""
        if not self.db.exists():
            return {}
        conn = sqlite3.connect(f"file:{quote(str(self.db))}?mode=ro", uri=True, timeout=10)
        try:
            return {(canonical_address(ip), jail): (at, bt) for ip, jail, at, bt in
                    conn.execute("SELECT ip, jail, timeofban, bantime FROM bips")}
        except sqlite3.OperationalError:  # tables not created yet
            return {}
        finally:
            conn.close()

    def ban(self, jail: str, bantime: int, *ips: str) -> tuple[float, float]:
        """Ban ``ips`` for ``bantime``; returns the clock just before and after. Waits for the
        database rows: fail2ban writes them from another thread and takes the jail's bantime
        at that moment, so the next ``set bantime`` must not come first."""
        self.client("set", jail, "bantime", str(bantime))
        before = time.time()
        self.client("set", jail, "banip", *ips)
        after = time.time()
        keys = [(canonical_address(ip), jail) for ip in ips]
        wait_for(lambda: all(self.rows().get(k, (0, None))[1] == bantime for k in keys),
                 30, f"fail2ban to record {ips} in {jail}")
        return before, after

    def banned(self, jail: str) -> str:
        return self.client("get", jail, "banned")

    def stop(self) -> None:
        """A clean stop (``fail2ban-client stop``), as ``systemctl stop fail2ban`` does."""
        if self.proc is not None and self.proc.poll() is None:
            self.client("stop")
            self.proc.wait(30)
        self.proc = None

    def __enter__(self) -> Fail2banServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)


class Expected:
    """The bans a test made, and the window their end must fall in."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str], tuple[float, float] | None] = {}

    def add(self, jail: str, address: str, bantime: int, window: tuple[float, float]) -> None:
        self.active[(address, jail)] = None if bantime < 0 else (
            window[0] + bantime, window[1] + bantime)

    def check(self, store_path: Path) -> None:
        store = SqliteStore(store_path)
        try:
            active = {b.key: b for b in store.active_bans(time.time())}
        finally:
            store.close()
        assert {(k.address, k.jail) for k in active} == set(self.active)
        for key, ban in active.items():
            window = self.active[(key.address, key.jail)]
            assert ban.origin == "fail2ban"
            if window is None:
                assert ban.expires_at is None, key
            else:
                # fail2ban stores whole seconds: allow them, and a little more (±2 s).
                assert ban.expires_at is not None
                assert window[0] - 2 <= ban.expires_at <= window[1] + 2, (key, ban, window)


def make_bans(f2b: Fail2banServer, expected: Expected, jails: tuple[str, str]) -> None:
    """The bans both this test and test_install.py make: kept, expired, lifted, permanent."""
    main, other = jails
    w = f2b.ban(main, 3600, "192.0.2.1", "2001:DB8:0:0::1")
    expected.add(main, "192.0.2.1", 3600, w)
    expected.add(main, "2001:db8::1", 3600, w)  # canonical spelling in banish
    w = f2b.ban(main, -1, "192.0.2.2")
    expected.add(main, "192.0.2.2", -1, w)
    w = f2b.ban(other, 7200, "198.51.100.7")
    expected.add(other, "198.51.100.7", 7200, w)
    f2b.ban(main, 3600, "192.0.2.3")
    f2b.client("set", main, "unbanip", "192.0.2.3")  # lifted: fail2ban deletes its row
    f2b.ban(other, 2, "198.51.100.8")  # over while we wait: fail2ban keeps the row
    wait_for(lambda: "198.51.100.8" not in f2b.banned(other), 30,
             "fail2ban to lift the short ban")


def banish(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "banish.cli.main", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BANISH_JAILS = """
[DEFAULT]
action = null
[sshd]
enabled = true
filter = demo
logpath = {logs}/auth.log
"""


def test_import_brings_over_exactly_the_active_bans(tmp_path: Path) -> None:
    expected = Expected()
    with Fail2banServer(tmp_path / "f2b", ("sshd", "recidive")) as f2b:
        f2b.start()
        make_bans(f2b, expected, ("sshd", "recidive"))
        f2b.stop()
    f2b_digest = digest(f2b.db)

    with Daemon(tmp_path / "banish", BANISH_JAILS) as d:
        (d.logs / "auth.log").touch()
        # The store comes from the config's banish.conf (dbfile), as for an admin.
        args = ("--socket", str(d.socket), "import-fail2ban", "--db", str(f2b.db),
                "--config", str(d.cfg))
        dry = banish(*args, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith("4 active bans would be imported"), dry.stdout
        assert not d.db.exists()

        done = banish(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout == ("4 active bans imported (recidive: 1, sshd: 3), "
                               "1 expired skipped, 0 already present\n")
        # recidive is not a jail of this config: imported, with one warning line.
        assert done.stderr.count("\n") == 1 and "recidive (1)" in done.stderr, done.stderr
        expected.check(d.db)
        assert digest(f2b.db) == f2b_digest, "fail2ban's database was written"

        again = banish(*args)
        assert again.returncode == 0, again.stderr
        assert again.stdout == ("0 active bans imported, 1 expired skipped, "
                                "4 already present\n")
        expected.check(d.db)

        # The daemon re-applies the imported bans at start, each until its original end.
        d.start()
        banned = d.cli("banned", "--json").stdout
        for address, jail in expected.active:
            if jail == "sshd":
                assert f'"ip": "{address}"' in banned, banned
        # While the daemon runs the import refuses: it would apply nothing until a restart.
        refused = banish(*args)
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and "banish is running" in refused.stderr
        d.stop()


@pytest.mark.parametrize(("content", "reason"), [
    (b"this is not a database at all\n" * 100, "not a fail2ban database"),
    (None, "not a fail2ban database (no fail2banDb table)"),  # banish's own store
])
def test_not_a_fail2ban_database_is_one_line_exit_2(tmp_path: Path, content: bytes | None,
                                                    reason: str) -> None:
    path = tmp_path / "fail2ban.sqlite3"
    if content is None:
        SqliteStore(path).close()
    else:
        path.write_bytes(content)
    before = digest(path)
    done = banish("--socket", str(tmp_path / "none.sock"), "import-fail2ban", "--db",
                  str(path), "--dbfile", str(tmp_path / "banish.sqlite3"), "--config",
                  packaged_config_dir())
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert str(path) in done.stderr and reason in done.stderr, done.stderr
    assert digest(path) == before
    assert not (tmp_path / "banish.sqlite3").exists()
