"""The SQLite store: bans, positions, upkeep, schema versions, bad files, and crash safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import banish
from banish.store import (
    PERMANENT,
    Ban,
    BanCount,
    BanKey,
    FilePosition,
    SqliteStore,
    Store,
    StoreError,
)
from banish.store import sqlite as store_sqlite

T0 = 1_700_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "banish.sqlite3"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db) as s:
        yield s


def ban(
    address: str = "192.0.2.1", jail: str = "sshd", at: float = T0, bantime: int = 600, **kw: object
) -> Ban:
    return Ban(address, jail, at, bantime, **kw)  # type: ignore[arg-type]


def test_is_a_store(store: SqliteStore) -> None:
    assert isinstance(store, Store)


# -- bans -----------------------------------------------------------------------------------


def test_history_round_trips_every_field(store: SqliteStore) -> None:
    bans = [
        Ban("192.0.2.1", "sshd", T0, 600, 5, ("line one", "line two"), "web1"),
        Ban("2001:db8::/64", "nginx", T0 + 1.5, PERMANENT, 3, (), ""),
        Ban("198.51.100.0/24", "sshd", T0 + 2, 0, 1, ("",), "web2"),
    ]
    store.add_bans(bans)
    assert store.ban_history() == bans
    assert store.ban_history(address="192.0.2.1") == bans[:1]
    assert store.ban_history(jail="sshd") == [bans[0], bans[2]]
    assert store.ban_history(jail="sshd", since=T0 + 1) == [bans[2]]
    assert store.ban_history(address="203.0.113.9") == []


def test_active_bans_at_a_time_with_remaining(store: SqliteStore) -> None:
    store.add_bans(
        [
            ban("192.0.2.1", at=T0, bantime=600),
            ban("192.0.2.2", at=T0 + 10, bantime=PERMANENT, origin="web2"),
            ban("192.0.2.3", jail="nginx", at=T0 + 20, bantime=100),
        ]
    )
    active = store.active_bans(T0 + 200)
    assert active == [
        Ban("192.0.2.1", "sshd", T0, 600),
        Ban("192.0.2.2", "sshd", T0 + 10, PERMANENT, origin="web2"),
    ]
    assert [a.remaining(T0 + 200) for a in active] == [400.0, None]
    assert [a.address for a in store.active_bans(T0, jail="nginx")] == ["192.0.2.3"]
    # Exactly at its end a ban is no longer active.
    assert [a.address for a in store.active_bans(T0 + 600)] == ["192.0.2.2"]


def test_a_shorter_ban_never_cuts_an_active_one_short(store: SqliteStore) -> None:
    store.add_bans([ban(at=T0, bantime=1000)])
    store.add_bans([ban(at=T0 + 10, bantime=60)])  # ends T0+70: shorter, ignored
    assert store.active_bans(T0 + 100)[0].expires_at == T0 + 1000
    store.add_bans([ban(at=T0 + 500, bantime=1000)])  # ends later: replaces
    assert store.active_bans(T0 + 100)[0] == Ban("192.0.2.1", "sshd", T0 + 500, 1000)
    store.add_bans([ban(at=T0 + 600, bantime=PERMANENT)])  # permanent wins
    store.add_bans([ban(at=T0 + 700, bantime=10**9)])  # and is never replaced
    [active] = store.active_bans(T0 + 10**10)
    assert (active.banned_at, active.expires_at) == (T0 + 600, None)
    assert len(store.ban_history()) == 5  # history keeps every decision


def test_same_key_twice_in_one_batch(store: SqliteStore) -> None:
    store.add_bans(
        [ban(at=T0, bantime=100), ban(at=T0 + 1, bantime=500), ban(at=T0 + 2, bantime=10)]
    )
    [active] = store.active_bans(T0)
    assert (active.banned_at, active.expires_at) == (T0 + 1, T0 + 501)


def test_a_failing_batch_records_nothing(store: SqliteStore) -> None:
    store.add_bans([ban("192.0.2.9")])
    bad = Ban("192.0.2.2", "sshd", T0, 600, 1, (), object())  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="cannot record bans"):
        store.add_bans([ban("192.0.2.1"), bad])
    assert [b.address for b in store.ban_history()] == ["192.0.2.9"]
    assert [a.address for a in store.active_bans(T0)] == ["192.0.2.9"]


def test_remove_bans_and_forget(store: SqliteStore) -> None:
    store.add_bans([ban("192.0.2.1"), ban("192.0.2.2"), ban("192.0.2.1", jail="nginx")])
    assert store.remove_bans([BanKey("192.0.2.1", "sshd"), BanKey("203.0.113.1", "sshd")]) == 1
    assert {a.key for a in store.active_bans(T0)} == {
        BanKey("192.0.2.2", "sshd"),
        BanKey("192.0.2.1", "nginx"),
    }
    assert len(store.ban_history()) == 3  # a plain unban keeps history for bantime.increment
    assert store.remove_bans([BanKey("192.0.2.2", "sshd")], forget=True) == 1
    assert [(b.address, b.jail) for b in store.ban_history()] == [
        ("192.0.2.1", "sshd"),
        ("192.0.2.1", "nginx"),
    ]
    assert store.remove_bans([]) == 0


def test_expired_and_release_expired(store: SqliteStore) -> None:
    store.add_bans(
        [
            ban("192.0.2.1", bantime=100),
            ban("192.0.2.2", bantime=50),
            ban("192.0.2.3", bantime=PERMANENT),
            ban("192.0.2.4", bantime=1000),
        ]
    )
    now = T0 + 100  # 192.0.2.1 ends exactly now: expired
    expired = store.expired_bans(now)
    assert [a.address for a in expired] == ["192.0.2.2", "192.0.2.1"]  # by end time
    assert store.expired_bans(now) == expired  # reading does not release
    assert store.release_expired(now) == expired
    assert store.expired_bans(now) == []
    assert store.release_expired(now) == []
    assert {a.address for a in store.active_bans(now)} == {"192.0.2.3", "192.0.2.4"}
    assert len(store.ban_history()) == 4


def test_ban_count_for_bantime_increment(store: SqliteStore) -> None:
    store.add_bans(
        [
            ban("192.0.2.1", "sshd", T0, 60),
            ban("192.0.2.1", "nginx", T0 + 100, 120),
            ban("192.0.2.1", "sshd", T0 + 200, 240),
            ban("192.0.2.2", "sshd", T0 + 300, 999),
        ]
    )
    assert store.ban_count("192.0.2.1", "sshd", T0) == BanCount(2, 240, T0 + 200)
    assert store.ban_count("192.0.2.1", None, T0) == BanCount(3, 240, T0 + 200)
    assert store.ban_count("192.0.2.1", None, T0 + 100) == BanCount(2, 240, T0 + 200)  # inclusive
    assert store.ban_count("192.0.2.1", "nginx", T0 + 101) == BanCount(0)
    assert store.ban_count("203.0.113.1", None, 0) == BanCount(0, None, None)


def test_matched_lines_are_capped(db: Path) -> None:
    long_line = "x" * (store_sqlite.MAX_MATCH_CHARS + 50)
    with SqliteStore(db, max_matches=3) as s:
        s.add_bans(
            [
                ban("192.0.2.1", matches=tuple(f"line {i}" for i in range(10))),
                ban("192.0.2.2", matches=(long_line, "two\nparts")),
            ]
        )
        first, second = s.ban_history()
    assert first.matches == ("line 7", "line 8", "line 9")
    assert second.matches == ("x" * store_sqlite.MAX_MATCH_CHARS, "two parts")
    with SqliteStore(db, max_matches=0) as s:
        s.add_bans([ban("192.0.2.3", matches=("kept nowhere",))])
        assert s.ban_history(address="192.0.2.3")[0].matches == ()


def test_undecodable_log_bytes_in_matches_are_kept_visible(store: SqliteStore) -> None:
    line = b"Failed password for \xff\xfe from 192.0.2.1".decode("utf-8", "surrogateescape")
    store.add_bans([ban(matches=(line, "caf\u00e9 \U0001f600", "nul\0byte"))])
    assert store.ban_history()[0].matches == (
        "Failed password for \\udcff\\udcfe from 192.0.2.1",
        "caf\u00e9 \U0001f600",
        "nul\\x00byte",
    )
    with pytest.raises(StoreError, match="cannot record bans"):
        store.add_bans([ban("\udcff")])  # an address must be text UTF-8 can hold


# -- positions and cursors -------------------------------------------------------------------


def test_positions_and_cursors(store: SqliteStore) -> None:
    assert store.get_position("/var/log/auth.log") is None
    assert store.get_cursor("sshd") is None
    pos = FilePosition("/var/log/auth.log", 1234, 5678, "ab12")
    store.set_position(pos)
    store.set_position(FilePosition("/var/log/other.log", 1, 2, "cd"))
    assert store.get_position("/var/log/auth.log") == pos
    rotated = FilePosition("/var/log/auth.log", 99, 0, "ef34")
    store.set_position(rotated)
    assert store.get_position("/var/log/auth.log") == rotated
    store.set_cursor("sshd", "s=abc;i=1")
    store.set_cursor("sshd", "s=abc;i=2")
    store.set_cursor("nginx", "s=def;i=9")
    assert (store.get_cursor("sshd"), store.get_cursor("nginx")) == ("s=abc;i=2", "s=def;i=9")


def test_everything_survives_reopening(db: Path) -> None:
    with SqliteStore(db) as s:
        s.add_bans([ban("192.0.2.1", matches=("m",)), ban("192.0.2.2", bantime=PERMANENT)])
        s.set_position(FilePosition("/log", 7, 70, "h"))
        s.set_cursor("sshd", "c")
        history, active = s.ban_history(), s.active_bans(T0)
    with SqliteStore(db) as s:
        assert s.ban_history() == history
        assert s.active_bans(T0) == active
        assert s.get_position("/log") == FilePosition("/log", 7, 70, "h")
        assert s.get_cursor("sshd") == "c"


# -- upkeep ----------------------------------------------------------------------------------


def test_purge_keeps_active_bans_and_their_record(store: SqliteStore) -> None:
    store.add_bans(
        [
            ban("192.0.2.1", at=T0, bantime=60),  # old, released below: purged
            ban("192.0.2.2", at=T0, bantime=PERMANENT),  # old but still active: kept
            ban("192.0.2.3", at=T0 + 5000, bantime=60),  # recent: kept
        ]
    )
    store.release_expired(T0 + 100)
    store.add_bans([ban("192.0.2.2", at=T0 + 1, bantime=60)])  # superseded record: purged
    assert store.purge(T0 + 1000) == 2
    assert [(b.address, b.banned_at) for b in store.ban_history()] == [
        ("192.0.2.2", T0),
        ("192.0.2.3", T0 + 5000),
    ]
    assert {a.address for a in store.active_bans(T0 + 6000)} == {"192.0.2.2"}
    assert store.purge(T0 + 1000) == 0


def test_purge_in_slices_oldest_first(store: SqliteStore) -> None:
    store.add_bans([ban(f"192.0.2.{i}", at=T0 + i, bantime=1) for i in range(10)])
    store.release_expired(T0 + 100)
    assert store.purge(T0 + 100, limit=4) == 4
    assert [b.address for b in store.ban_history()][:1] == ["192.0.2.4"]
    assert store.purge(T0 + 100, limit=4) == 4
    assert store.purge(T0 + 100, limit=4) == 2


def test_compact_gives_purged_space_back(db: Path) -> None:
    with SqliteStore(db) as s:
        lines = ("x" * 200,) * 5
        s.add_bans(
            [ban(f"10.0.{i >> 8}.{i & 255}", at=T0, bantime=1, matches=lines) for i in range(5000)]
        )
        s.release_expired(T0 + 10)
        s.compact()
        full = db.stat().st_size
        assert s.purge(T0 + 10) == 5000
        s.compact()
        assert db.stat().st_size < full / 5
        assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


# -- the file: modes, schema, bad files ------------------------------------------------------


def test_new_file_is_private_wal_and_versioned(db: Path, store: SqliteStore) -> None:
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(store_sqlite.MIGRATIONS)
        assert raw.execute("PRAGMA application_id").fetchone()[0] == store_sqlite.APPLICATION_ID
        assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    finally:
        raw.close()


def test_synchronous_setting(db: Path) -> None:
    with SqliteStore(db, synchronous="FULL") as s:
        assert s._conn is not None
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    with SqliteStore(db) as s:
        assert s._conn is not None
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(db, synchronous="OFF")  # type: ignore[arg-type]


def test_opening_an_older_database_upgrades_it(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SqliteStore(db) as s:
        s.add_bans([ban()])
    old_version = len(store_sqlite.MIGRATIONS)

    def add_note(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE ban_history ADD COLUMN note TEXT DEFAULT 'migrated'")

    monkeypatch.setattr(store_sqlite, "MIGRATIONS", [*store_sqlite.MIGRATIONS, add_note])
    with SqliteStore(db) as s:
        assert s.ban_history() == [ban()]
        assert s._conn is not None
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == old_version + 1
        assert s._conn.execute("SELECT note FROM ban_history").fetchone()[0] == "migrated"


def test_a_failed_migration_leaves_the_old_schema(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SqliteStore(db) as s:
        s.add_bans([ban()])
    old_version = len(store_sqlite.MIGRATIONS)

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE extra (x)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    monkeypatch.setattr(store_sqlite, "MIGRATIONS", [*store_sqlite.MIGRATIONS, half_done])
    with pytest.raises(StoreError, match="no such table"):
        SqliteStore(db)
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == old_version
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "extra" not in tables
    finally:
        raw.close()


def test_a_database_from_a_newer_banish_is_refused_untouched(db: Path) -> None:
    SqliteStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {len(store_sqlite.MIGRATIONS) + 3}")
    raw.close()
    before = db.read_bytes()
    with pytest.raises(StoreError) as err:
        SqliteStore(db)
    assert "newer banish" in str(err.value)
    assert str(db) in str(err.value)
    assert db.read_bytes() == before


def test_fail2ban_database_is_refused_untouched(db: Path) -> None:
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE fail2banDb(version INTEGER)")
    raw.commit()
    raw.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match=r"not a banish ban database.*fail2ban"):
        SqliteStore(db)
    assert db.read_bytes() == before
    assert not Path(f"{db}-wal").exists()


def _one_line_naming(err: StoreError, path: Path) -> str:
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    return text


@pytest.mark.parametrize("content", [b"this is not a database, just text\n" * 100, b"\x00" * 50])
def test_garbage_file_gives_one_line(db: Path, content: bytes) -> None:
    db.write_bytes(content)
    with pytest.raises(StoreError) as err:
        SqliteStore(db)
    text = _one_line_naming(err.value, db)
    assert "not a database" in text or "malformed" in text


def test_damaged_pages_give_one_line_not_sqlite_errors(db: Path) -> None:
    with SqliteStore(db) as s:
        s.add_bans([ban(f"10.0.{i >> 8}.{i & 255}", matches=("m" * 100,)) for i in range(3000)])
    data = bytearray(db.read_bytes())
    page = 4096
    for n in range(3, len(data) // page):  # keep page 1 (header, schema): damage the rest
        data[n * page : n * page + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    with SqliteStore(db) as s:  # opening reads only page 1, so the damage shows later
        with pytest.raises(StoreError) as checked:
            s.check()
        assert "corrupt" in _one_line_naming(checked.value, db)
        with pytest.raises(StoreError) as read:
            s.ban_history()
        assert "malformed" in _one_line_naming(read.value, db)


def test_unopenable_paths(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "b.sqlite3"
    with pytest.raises(StoreError) as err:
        SqliteStore(missing_dir)
    _one_line_naming(err.value, missing_dir)
    with pytest.raises(StoreError) as err:
        SqliteStore(tmp_path)  # a directory
    _one_line_naming(err.value, tmp_path)


def test_closed_store_raises_store_error(db: Path) -> None:
    s = SqliteStore(db)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.active_bans(T0)


def test_in_memory_store_for_tests(tmp_path: Path) -> None:
    with SqliteStore(":memory:") as s:
        s.add_bans([ban()])
        assert len(s.active_bans(T0)) == 1


# -- concurrency and durability --------------------------------------------------------------


def test_a_second_process_sees_committed_bans_and_a_held_lock_is_a_store_error(db: Path) -> None:
    with SqliteStore(db) as writer, SqliteStore(db, busy_timeout=0.05) as other:
        writer.add_bans([ban()])
        assert other.active_bans(T0) == writer.active_bans(T0)  # WAL: reader sees the commit
        raw = sqlite3.connect(db, isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")  # somebody else holds the write lock
            with pytest.raises(StoreError, match="locked"):
                other.add_bans([ban("192.0.2.7")])
            raw.execute("ROLLBACK")
        finally:
            raw.close()
        other.add_bans([ban("192.0.2.7")])
        assert len(writer.active_bans(T0)) == 2


CHILD = textwrap.dedent(
    """
    import sys
    from banish.store import Ban, SqliteStore

    store = SqliteStore(sys.argv[1])
    batch = 0
    while True:
        bans = [Ban(f"10.{batch >> 8 & 255}.{batch & 255}.{i}", "sshd", 1.7e9 + batch, 600, 1,
                    ("x" * 100,) * 3) for i in range(200)]
        store.add_bans(bans)
        print(batch, flush=True)  # only after add_bans returned
        batch += 1
    """
)


def test_every_acknowledged_ban_survives_kill_9(db: Path) -> None:
    """add_bans returns only after commit: a SIGKILL at any moment loses nothing it acked."""
    env = {**os.environ, "PYTHONPATH": str(Path(banish.__file__).parent.parent)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    acked: list[int] = []
    try:
        for line in child.stdout:
            acked.append(int(line))
            if len(acked) == 60:
                break
        child.send_signal(signal.SIGKILL)  # while it is busy with the next batches
        acked.extend(int(line) for line in child.stdout)  # acked but still in the pipe
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 60
    with SqliteStore(db) as s:
        assert s._conn is not None
        assert s._conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {a.address for a in s.active_bans(0)}
        history = len(s.ban_history())
    expected = {f"10.{b >> 8 & 255}.{b & 255}.{i}" for b in acked for i in range(200)}
    assert expected <= stored
    assert history % 200 == 0  # whole batches only: never half a transaction


def test_100k_bans_go_in_one_fast_transaction(store: SqliteStore) -> None:
    bans = [
        ban(f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}", at=T0 + i, matches=("m" * 100,) * 3)
        for i in range(100_000)
    ]
    start = time.perf_counter()
    store.add_bans(bans)
    elapsed = time.perf_counter() - start
    assert len(store.active_bans(T0)) == 100_000
    assert elapsed < 5.0, f"add_bans of 100k took {elapsed:.2f} s"
