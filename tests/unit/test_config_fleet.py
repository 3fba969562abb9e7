"""The [fleet] section and the jails' fleet options: read, checked, never logged with secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from banish.config.fleet import describe
from banish.config.loader import load_config
from banish.errors import ConfigError
from banish.store.base import OutboxEvent
from banish.store.sqlite import SqliteStore

JAILS = """[demo]
enabled = true
filter = demo
logpath = /tmp/none.log
action = null
fleet = both
fleetmaxretry = 5
"""


def tree(tmp_path: Path, banish_conf: str, jails: str = JAILS) -> str:
    (tmp_path / "filter.d").mkdir(exist_ok=True)
    (tmp_path / "filter.d" / "demo.conf").write_text(
        "[Definition]\nfailregex = ^\\s*login failed from <HOST>$\n")
    (tmp_path / "jail.conf").write_text(jails)
    (tmp_path / "banish.conf").write_text(banish_conf)
    os.chmod(tmp_path / "banish.conf", 0o600)
    return str(tmp_path)


def test_fleet_section_and_jail_options(tmp_path: Path) -> None:
    config = load_config(tree(tmp_path, "[Definition]\n[fleet]\ndatabase = host=/run/pg "
                                        "dbname=banish user=banish\nnode = web1\n"))
    fleet = config.daemon.fleet
    assert fleet is not None and (fleet.node, fleet.passfile) == ("web1", None)
    (jail,) = config.jails
    assert jail.settings.fleet == "both" and jail.settings.fleetmaxretry == 5
    assert jail.settings.shares and jail.settings.receives
    assert load_config(tree(tmp_path, "[Definition]\n")).daemon.fleet is None


@pytest.mark.parametrize("conf, jails, message", [
    ("[fleet]\nnode = web1\n", JAILS, "database"),
    ("[fleet]\ndatabase = dbname=x\nnode = web 1\n", JAILS, "node"),
    ("[fleet]\ndatabase = dbname=x\npassfile = /nonexistent\n", JAILS, "passfile"),
    ("[fleet]\ndatabase = dbname=x\nurl = y\n", JAILS, "unknown option"),
    ("", JAILS.replace("fleet = both", "fleet = everywhere"), "fleet"),
    ("", JAILS.replace("fleetmaxretry = 5", "fleetmaxretry = 0"), "fleetmaxretry"),
])
def test_bad_fleet_settings_are_one_line_errors(tmp_path: Path, conf: str, jails: str,
                                                message: str) -> None:
    directory = tree(tmp_path, "[Definition]\n" + conf, jails)
    if ("fleet =" in jails and "everywhere" in jails) or "fleetmaxretry = 0" in jails:
        (skipped,) = load_config(directory).skipped
        assert message in str(skipped.error)
        return
    with pytest.raises(ConfigError, match=message):
        load_config(directory)


def test_a_password_never_reaches_a_log_and_a_readable_one_warns(tmp_path: Path) -> None:
    assert describe("host=db dbname=banish password=s3cret user=x") == \
        "host=db dbname=banish password=*** user=x"
    assert describe("postgresql://banish:s3cret@db/banish") == "postgresql://banish:***@db/banish"
    assert describe("host=db password='a b\\'c' dbname=x") == "host=db password=*** dbname=x"
    directory = tree(tmp_path, "[Definition]\n[fleet]\ndatabase = host=db password=s3cret\n")
    assert not load_config(directory).warnings
    os.chmod(tmp_path / "banish.conf", 0o644)
    (warning,) = load_config(directory).warnings
    assert "readable" in str(warning) or "others can read" in str(warning)
    assert "s3cret" not in str(warning)


def test_the_outbox_keeps_decisions_in_order_until_dropped(tmp_path: Path) -> None:
    with SqliteStore(str(tmp_path / "s.sqlite3")) as store:
        store.outbox_add([OutboxEvent(0, "ban", "demo", ("192.0.2.1", "192.0.2.3"), 600,
                                      1000.0),
                          OutboxEvent(0, "unban", "demo", ("192.0.2.2",), -1, 1001.0)],
                         {"fleet_queued_upto": "1000.0"})
        first, second = store.outbox_peek(10)
        assert (first.kind, first.addresses, first.banned_at) == (
            "ban", ("192.0.2.1", "192.0.2.3"), 1000.0)
        assert second.seq > first.seq and store.outbox_size() == 3
        assert store.outbox_peek(2) == [first]  # as many decisions as hold 2 addresses
        assert store.outbox_peek(1) == [first]  # ... but always one
        store.outbox_drop(first.seq)
        assert [e.addresses for e in store.outbox_peek(10)] == [("192.0.2.2",)]
        store.set_value("fleet_cursor", "42")
    with SqliteStore(str(tmp_path / "s.sqlite3")) as store:  # durable across a restart
        assert store.outbox_size() == 1 and store.get_value("fleet_cursor") == "42"
        assert store.get_value("fleet_queued_upto") == "1000.0"


def test_decisions_are_keyed_by_what_they_decide() -> None:
    """A resend is the same key (the database keeps it once); another decision is not."""
    from banish.fleet.database import FleetEvent, group

    one = FleetEvent("ban", "demo", ("192.0.2.2", "192.0.2.1"), 600, 1000.0, 5.0)
    again = FleetEvent("ban", "demo", ("192.0.2.1",), 600, 1000.0, 9.0)
    (first,) = group("A", [one])
    (merged,) = group("A", [one, again])  # queued twice by a crash: one decision
    assert merged[0] == first[0] and merged[3] == ["192.0.2.1", "192.0.2.2"]
    assert group("B", [one])[0][0] != first[0]
    assert group("A", [FleetEvent("ban", "demo", one.addresses, 601, 1000.0, 5.0)]
                 )[0][0] != first[0]
    kinds = [d[1] for d in group("A", [one, FleetEvent("unban", "demo", ("192.0.2.1",),
                                                        600, 1000.0, 1.0)])]
    assert kinds == ["ban", "unban"]  # order kept
