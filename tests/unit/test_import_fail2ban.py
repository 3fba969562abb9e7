"""``banish import-fail2ban`` without fail2ban: which rows are active, canonical addresses,
idempotence, and one-line errors for files that are not fail2ban databases.

The databases here are hand-made with the few columns the import reads (the layout of fail2ban
0.11+'s ``fail2banDb`` and ``bips`` tables); tests/integration/test_import_fail2ban.py runs the
real fail2ban-server.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from banish.cli.import_fail2ban import Fail2banBan, plan_import, read_fail2ban_bans
from banish.paths import packaged_config_dir
from banish.store.base import BanKey
from banish.store.sqlite import SqliteStore
from tests.unit.test_cli_regex import run  # main() in-process: exit code, stdout, stderr

NOW = 1_800_000_000


def fail2ban_db(path: Path, rows: list[tuple[str, str, int, int, str | None]],
                *, version: int = 4, bips: bool = True) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE fail2banDb(version INTEGER)")
    conn.execute("INSERT INTO fail2banDb VALUES (?)", (version,))
    if bips:
        conn.execute("CREATE TABLE bips(ip TEXT NOT NULL, jail TEXT NOT NULL, "
                     "timeofban INTEGER NOT NULL, bantime INTEGER NOT NULL, "
                     "bancount INTEGER NOT NULL DEFAULT 1, data JSON, PRIMARY KEY(ip, jail))")
        conn.executemany("INSERT INTO bips(ip, jail, timeofban, bantime, data) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def imp(tmp: Path, db: Path, *extra: str) -> tuple[int, str, str]:
    return run("--socket", str(tmp / "none.sock"), "import-fail2ban", "--db", str(db),
               "--config", packaged_config_dir(), "--dbfile", str(tmp / "banish.sqlite3"),
               "--now", str(NOW), *extra)


def row(ip: str, at: int, bantime: int, jail: str = "sshd") -> Fail2banBan:
    return Fail2banBan(ip, jail, at, bantime)


def test_active_means_not_over_at_now_or_permanent() -> None:
    plan = plan_import([
        row("192.0.2.1", NOW - 10, 60),      # 50 s left
        row("192.0.2.2", NOW - 60, 60),      # ends exactly now: over
        row("192.0.2.3", NOW - 10**6, -1),   # permanent
        row("192.0.2.4", NOW - 10, -2),      # length unknown (upgraded pre-0.11 database)
        row("alice", NOW, 60),               # an <F-ID> that is no address
    ], NOW, {})
    assert [(b.address, b.expires_at) for b in plan.bans] == [
        ("192.0.2.3", None), ("192.0.2.1", NOW + 50)]
    assert (plan.expired, plan.unknown_bantime, plan.not_addresses) == (1, 1, ["alice"])
    assert all(b.origin == "fail2ban" for b in plan.bans)


def test_addresses_are_canonical_and_spellings_merge() -> None:
    plan = plan_import([
        row("::ffff:192.0.2.1", NOW, 60),
        row("192.0.2.1", NOW, 600),           # the same address, ending later: kept
        row("2001:DB8:0:0::1", NOW, 60),
        row("192.0.2.1", NOW, 60, jail="recidive"),
    ], NOW, {})
    assert sorted((b.jail, b.address, b.bantime) for b in plan.bans) == [
        ("recidive", "192.0.2.1", 60), ("sshd", "192.0.2.1", 600), ("sshd", "2001:db8::1", 60)]


def test_bans_banish_already_holds_as_long_are_present() -> None:
    rows = [row("192.0.2.1", NOW, 60), row("192.0.2.2", NOW, 60), row("192.0.2.3", NOW, -1)]
    existing: dict[BanKey, float | None] = {
        BanKey("192.0.2.1", "sshd"): NOW + 60,   # as long: present
        BanKey("192.0.2.2", "sshd"): NOW + 10,   # shorter: fail2ban's ends later, import it
        BanKey("192.0.2.3", "sshd"): None,       # permanent both: present
    }
    plan = plan_import(rows, NOW, existing)
    assert [b.address for b in plan.bans] == ["192.0.2.2"] and plan.present == 2


def test_failures_and_matches_come_along_and_bad_data_is_ignored(tmp_path: Path) -> None:
    db = fail2ban_db(tmp_path / "f2b.sqlite3", [
        ("192.0.2.1", "sshd", NOW, 60, json.dumps({"failures": 5, "matches": ["a", "b"]})),
        ("192.0.2.2", "sshd", NOW, 60, "{not json"),
        ("192.0.2.3", "sshd", NOW, 60, None),
    ])
    got = {b.ip: (b.failures, b.matches) for b in read_fail2ban_bans(str(db))}
    assert got == {"192.0.2.1": (5, ("a", "b")), "192.0.2.2": (0, ()), "192.0.2.3": (0, ())}


def test_import_writes_the_store_once_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    db = fail2ban_db(tmp_path / "f2b.sqlite3", [
        ("192.0.2.1", "sshd", NOW - 100, 3600, None),
        ("192.0.2.2", "sshd", NOW - 7200, 3600, None),
        ("192.0.2.3", "recidive", NOW - 100, -1, None),
    ])
    code, out, err = imp(tmp_path, db, "--dry-run")
    assert code == 0 and out.startswith("2 active bans would be imported (recidive: 1, sshd: 1)")
    assert not (tmp_path / "banish.sqlite3").exists()
    code, out, err = imp(tmp_path, db)
    assert code == 0
    assert out == ("2 active bans imported (recidive: 1, sshd: 1), 1 expired skipped, "
                   "0 already present\n")
    # The packaged config has no recidive jail: one warning line naming it.
    assert err.count("\n") == 1 and "recidive (1)" in err and err.startswith("banish: warning:")
    store = SqliteStore(tmp_path / "banish.sqlite3")
    try:
        active = {(b.address, b.jail): b.expires_at for b in store.active_bans(NOW)}
    finally:
        store.close()
    assert active == {("192.0.2.1", "sshd"): NOW - 100 + 3600, ("192.0.2.3", "recidive"): None}
    code, out, _ = imp(tmp_path, db)
    assert out == "0 active bans imported, 1 expired skipped, 2 already present\n"


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: None, "cannot read fail2ban's database: no such file"),
    (lambda p: p.mkdir(), "cannot read fail2ban's database: not a file"),
    (lambda p: p.write_bytes(b"\x00garbage" * 512), "not a fail2ban database (file is not a "
                                                    "database)"),
    (lambda p: SqliteStore(p).close(), "not a fail2ban database (no fail2banDb table)"),
    (lambda p: fail2ban_db(p, [], version=2, bips=False),
     "fail2ban database version 2 has no bips table"),
])
def test_unusable_database_is_one_line_exit_2(tmp_path: Path, make: Callable[[Path], object],
                                              reason: str) -> None:
    db = tmp_path / "fail2ban.sqlite3"
    make(db)
    code, out, err = imp(tmp_path, db)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"banish: {db}: {reason}"), err
    assert not (tmp_path / "banish.sqlite3").exists()


def test_missing_config_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    code, _, err = run("import-fail2ban", "--config", str(tmp_path / "nope"))
    assert code == 2 and err == f"banish: {tmp_path / 'nope'} --config: config directory " \
                                "does not exist\n"
