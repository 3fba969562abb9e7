"""The book of active bans: the questions the enforcer and scan's replay ask of it."""

from __future__ import annotations

from banish.core.active import ActiveBans
from banish.events import PERMANENT, Ban, BanKey


def ban(address: str, at: float = 0.0, bantime: int = 600, jail: str = "sshd") -> Ban:
    return Ban(address, jail, at, bantime)


def test_banned_by_itself_or_inside_a_network_of_the_same_jail_only() -> None:
    book = ActiveBans([ban("192.0.2.1"), ban("2001:db8:1::/64"), ban("198.51.100.0/24",
                                                                      jail="web")])
    assert BanKey("192.0.2.1", "sshd") in book
    assert book.is_banned("192.0.2.1", "sshd") and not book.is_banned("192.0.2.1", "web")
    assert book.is_banned("2001:db8:1::77", "sshd")
    assert book.is_banned("198.51.100.9", "web") and not book.is_banned("198.51.100.9", "sshd")
    assert book.networks("sshd") == ["2001:db8:1::/64"]


def test_a_ban_replaces_another_of_its_key_only_when_it_ends_later() -> None:
    book = ActiveBans([ban("192.0.2.1", at=0, bantime=1000)])
    book.add([ban("192.0.2.1", at=10, bantime=60)])  # ends at 70: kept out
    assert book.get(BanKey("192.0.2.1", "sshd")) == ban("192.0.2.1", 0, 1000)
    book.add([ban("192.0.2.1", at=500, bantime=1000)])
    assert book.next_end() == 1500
    book.add([ban("192.0.2.1", at=600, bantime=PERMANENT)])
    book.add([ban("192.0.2.1", at=700, bantime=10**9)])  # nothing outlasts permanent
    assert book.next_end() is None and len(book) == 1


def test_over_lists_what_ended_and_remove_takes_it_out() -> None:
    book = ActiveBans([ban("192.0.2.1", bantime=10), ban("192.0.2.2", bantime=20),
                       ban("192.0.2.3", bantime=PERMANENT)])
    assert [b.address for b in book.over(10)] == ["192.0.2.1"]  # an end at now is over
    assert book.remove([BanKey("192.0.2.1", "sshd"), BanKey("192.0.2.9", "sshd")]) == [
        ban("192.0.2.1", bantime=10)]
    assert sorted(k.address for k in book.ban_keys()) == ["192.0.2.2", "192.0.2.3"]


def test_a_book_over_another_reads_through_but_holds_only_its_own() -> None:
    active = ActiveBans([ban("203.0.113.0/24"), ban("192.0.2.1")])
    batch = ActiveBans(over=active)
    batch.add([ban("192.0.2.7")])
    assert batch.is_banned("203.0.113.5", "sshd") and batch.is_banned("192.0.2.1", "sshd")
    assert batch.is_banned("192.0.2.7", "sshd") and not active.is_banned("192.0.2.7", "sshd")
    assert [b.address for b in batch] == ["192.0.2.7"] and len(batch) == 1
    assert {b.address for b in batch.banned_in("sshd")} == {"192.0.2.7", "203.0.113.0/24",
                                                             "192.0.2.1"}
