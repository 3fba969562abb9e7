"""Friends: the resolver's rules (a failed lookup keeps the last addresses, huge or
everyone-answers are refused), friends-only sections, friends never banned, the SSH guard."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from banish.config.loader import load_config
from banish.config.model import FriendsOnly
from banish.daemon.friends import guard, services, session_of
from banish.daemon.resolver import MAX_ADDRESSES, Resolver
from banish.errors import ConfigError


class Dns:
    """A lookup the test controls: name -> addresses, or an exception to raise."""

    def __init__(self) -> None:
        self.records: dict[str, list[str] | BaseException] = {}
        self.asked: list[str] = []

    async def __call__(self, name: str) -> list[str]:
        self.asked.append(name)
        answer = self.records.get(name, OSError(-2, "Name or service not known"))
        if isinstance(answer, BaseException):
            raise answer
        return answer


def refresh(resolver: Resolver, now: float, names: list[str] | None = None) -> bool:
    return asyncio.run(resolver.refresh(now, names))


def test_a_changed_record_is_picked_up_when_due_and_a_failure_keeps_the_last(
        caplog: pytest.LogCaptureFixture) -> None:
    dns = Dns()
    dns.records["home.test"] = ["192.0.2.5"]
    resolver = Resolver(60, dns)
    assert resolver.track(["home.test"]) == ["home.test"]
    assert refresh(resolver, 0) and resolver.addresses("home.test") == {"192.0.2.5"}
    dns.records["home.test"] = ["192.0.2.6", "2001:db8::6"]
    assert not refresh(resolver, 30)  # not due yet
    assert refresh(resolver, 60)
    assert resolver.addresses("home.test") == {"192.0.2.6", "2001:db8::6"}
    del dns.records["home.test"]  # the DNS provider is down
    assert not refresh(resolver, 120)
    assert resolver.addresses("home.test") == {"192.0.2.6", "2001:db8::6"}
    (state,) = resolver.status()
    assert "lookup failed" in state["error"] and state["resolved_at"] == 60
    assert "keeping 192.0.2.6, 2001:db8::6" in caplog.text
    dns.records["home.test"] = ["192.0.2.6", "2001:db8::6"]
    assert not refresh(resolver, 180)  # same answer: nothing to reshape
    assert resolver.status()[0]["error"] == ""


@pytest.mark.parametrize("answer, reason", [
    ([f"198.18.0.{i}" for i in range(1, MAX_ADDRESSES + 2)], "more than 64"),
    (["0.0.0.0"], "unspecified address"),
    (["192.0.2.7", "::"], "unspecified address"),
    (TimeoutError(), "timed out"),
])
def test_answers_that_would_let_everyone_in_are_refused(
        answer: list[str] | BaseException, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    dns = Dns()
    dns.records["friend.test"] = ["192.0.2.9"]
    resolver = Resolver(1, dns)
    resolver.track(["friend.test"])
    refresh(resolver, 0)
    dns.records["friend.test"] = answer
    assert not refresh(resolver, 1)
    assert resolver.addresses("friend.test") == {"192.0.2.9"}
    assert reason in resolver.status()[0]["error"] and reason in caplog.text


def test_tracking_keeps_known_names_and_drops_the_others() -> None:
    dns = Dns()
    dns.records.update({"a.test": ["192.0.2.1"], "b.test": ["192.0.2.2"]})
    resolver = Resolver(60, dns)
    resolver.track(["a.test", "b.test"])
    refresh(resolver, 0)
    assert resolver.track(["B.test", "c.test"]) == ["c.test"]
    assert resolver.addresses("b.test") == {"192.0.2.2"} and not resolver.addresses("a.test")
    assert resolver.networks(["b.test"]) == (ipaddress.ip_network("192.0.2.2/32"),)


FRIENDS = """
[DEFAULT]
port = 0:65535
[demo]
enabled = true
filter = demo
logpath = /tmp/none.log
action = null
ignoreip = 127.0.0.1
[friends-only ssh]
port = 22
friends = home.test 203.0.113.0/24
"""


def tree(tmp_path: Path, jails: str) -> str:
    (tmp_path / "filter.d").mkdir()
    (tmp_path / "filter.d" / "demo.conf").write_text(
        "[Definition]\nfailregex = ^\\s*login failed from <HOST>$\n")
    (tmp_path / "jail.conf").write_text(jails)
    return str(tmp_path)


def test_friends_only_sections_and_friends_are_in_every_jails_ignore_list(
        tmp_path: Path) -> None:
    config = load_config(tree(tmp_path, FRIENDS))
    (service,) = config.friends
    assert (service.name, service.ports, service.protocol) == ("ssh", (22,), "tcp")
    assert service.friends.names == ("home.test",)
    (jail,) = config.jails
    assert set(jail.settings.ignoreip.names) == {"home.test"}
    assert ipaddress.ip_network("203.0.113.0/24") in jail.jail_firewall.allow
    assert ipaddress.ip_network("127.0.0.1/32") in jail.jail_firewall.allow


@pytest.mark.parametrize("section, message", [
    ("[friends-only ssh]\nfriends = home.test\n", "port"),
    ("[friends-only ssh]\nport = 22\n", "no friends"),
    ("[friends-only ssh]\nport = 22\nfriends = not_a host!\n", "friends"),
    ("[friends-only ssh]\nport = 22\nfriends = a.test\nbantime = 1h\n", "unknown option"),
])
def test_a_broken_friends_only_section_refuses_the_configuration(
        tmp_path: Path, section: str, message: str) -> None:
    jails = FRIENDS.split("[friends-only ssh]")[0] + section
    with pytest.raises(ConfigError, match=message) as err:
        load_config(tree(tmp_path, jails))
    assert "[friends-only ssh]" in str(err.value)


def test_the_session_guard_refuses_what_would_cut_off_this_ssh_session(
        tmp_path: Path) -> None:
    config = load_config(tree(tmp_path, FRIENDS))
    dns = Dns()
    dns.records["home.test"] = ["192.0.2.5"]
    resolver = Resolver(60, dns)
    resolver.track(["home.test"])
    refresh(resolver, 0)
    new = services(config.friends, resolver)
    assert new == (FriendsOnly("ssh", (22,), "tcp", (ipaddress.ip_network("203.0.113.0/24"),
                                                     ipaddress.ip_network("192.0.2.5/32"))),)
    outsider = session_of({"SSH_CONNECTION": "198.51.100.4 50022 10.0.0.2 22"})
    with pytest.raises(ConfigError, match=r"would cut off this SSH session from 198\.51\.100\.4"):
        guard(new, (), config.friends, outsider)
    guard(new, config.friends, config.friends, outsider)  # already in force: not "first"
    guard(new, (), config.friends, session_of({"SSH_CLIENT": "192.0.2.5 50022 22"}))
    guard(new, (), config.friends, session_of({"SSH_CONNECTION": "198.51.100.4 1 10.0.0.2 2222"}))
    guard(new, (), config.friends, session_of({}))  # no SSH session: nothing to protect
