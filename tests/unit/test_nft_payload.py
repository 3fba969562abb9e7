"""The nftables payload: bans grouped into sets, element lists written as JSON text that
equals what json.dumps makes of the dict form, and the friends-only layout (set names that
never meet a jail's, drop rules first, lists refilled rather than recreated).

The text path exists for speed only (tests/integration covers what the kernel does with it); a
difference here would send nft something else than the readable dict form says.
"""

from __future__ import annotations

import json
import socket
from ipaddress import ip_network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from banish.actions.base import FriendsOnly, JailFirewall
from banish.actions.nftpayload import (
    Listing,
    SetKey,
    allow_name,
    elements,
    elements_text,
    friends_name,
    friends_rules,
    group,
    group_keys,
    plain_addresses,
    skeleton,
    timed,
    value,
)
from banish.events import PERMANENT, Ban, BanKey

SHAPES = [("sshd", 4, 32), ("sshd", 6, 128), ("web-1", 4, 24), ("web-1", 6, 64),
          ('odd"name\\', 4, 32)]
timeouts = st.one_of(st.none(), st.integers(1, 10**9))
NOW = 1_700_000_000.0


def _text(version: int, number: int) -> str:
    af, size = (socket.AF_INET, 4) if version == 4 else (socket.AF_INET6, 16)
    return socket.inet_ntop(af, number.to_bytes(size, "big"))


@given(
    shape=st.sampled_from(SHAPES),
    numbers=st.lists(st.integers(0, 2**128 - 1), max_size=20, unique=True),
    times=st.lists(timeouts, min_size=20, max_size=20),
    cmd=st.sampled_from(["add", "delete"]),
    with_timeouts=st.booleans(),
)
def test_text_equals_dict_form(shape: tuple[str, int, int], numbers: list[int],
                               times: list[int | None], cmd: str, with_timeouts: bool) -> None:
    key = SetKey(*shape)
    bits = 32 if key.version == 4 else 128
    elems = {_text(key.version, n % (1 << bits)): t for n, t in zip(numbers, times, strict=False)}
    vals = [value(key.version, key.prefixlen, a) for a in elems]
    if with_timeouts:
        vals = [timed(v, t) for v, t in zip(vals, elems.values(), strict=True)]
    text = elements_text(cmd, key, elems, with_timeouts=with_timeouts)
    assert json.loads(text) == elements(cmd, key.name, vals)


def test_examples_read_as_expected() -> None:
    text = elements_text("add", SetKey("sshd", 4, 24), {"192.0.2.0": 600, "10.0.0.0": None})
    assert json.loads(text)["add"]["element"]["elem"] == [
        {"elem": {"val": {"prefix": {"addr": "192.0.2.0", "len": 24}}, "timeout": 600}},
        {"prefix": {"addr": "10.0.0.0", "len": 24}},
    ]
    text = elements_text("delete", SetKey("sshd", 6, 128), {"::1": 5}, with_timeouts=False)
    assert json.loads(text) == {"delete": {"element": {
        "family": "inet", "table": "banish", "name": "sshd-v6", "elem": ["::1"]}}}


def test_bans_are_grouped_by_set_with_the_time_they_have_left() -> None:
    bans = [
        Ban("198.51.100.7", "sshd", NOW, 600),
        Ban("198.51.100.8", "sshd", NOW - 0.5, 600),  # 599.5 left: rounded up, never shorter
        Ban("198.51.100.9", "sshd", NOW - 600, 600),  # over at NOW: skipped
        Ban("198.51.100.10", "sshd", NOW - 601, 600),  # long over
        Ban("2001:db8::7", "sshd", NOW - 100, PERMANENT),
        Ban("2001:db8::8", "sshd", NOW, -5),  # any negative bantime is permanent
        Ban("203.0.113.0/24", "sshd", NOW, 60),
        Ban("203.0.113.0/24", "sshd", NOW, 6000),  # a duplicate keeps its longest
        Ban("2001:db8:1::/48", "web", NOW, 60),
        Ban("2001:db8:1::/48", "web", NOW, PERMANENT),  # ... and permanent is the longest
        Ban("198.51.100.7", "web", NOW + 30, 600),  # decided "later" than now: 630 s
        Ban("10.0.0.1/32", "web", NOW, 60),  # a /32 is a host
    ]
    assert group(bans, NOW) == {
        SetKey("sshd", 4, 32): {"198.51.100.7": 600, "198.51.100.8": 600},
        SetKey("sshd", 6, 128): {"2001:db8::7": None, "2001:db8::8": None},
        SetKey("sshd", 4, 24): {"203.0.113.0": 6000},
        SetKey("web", 6, 48): {"2001:db8:1::": None},
        SetKey("web", 4, 32): {"198.51.100.7": 630, "10.0.0.1": 60},
    }
    assert group([Ban("198.51.100.7", "sshd", NOW - 599.9, 600)], NOW) == {
        SetKey("sshd", 4, 32): {"198.51.100.7": 1}}
    assert group_keys([BanKey("203.0.113.0/24", "sshd"), BanKey("::1", "web")]) == {
        SetKey("sshd", 4, 24): {"203.0.113.0": None}, SetKey("web", 6, 128): {"::1": None}}


@pytest.mark.parametrize("text", ['1.2.3.4", "x', "1.2.3.4\n", "a b", "1.2.3.4\\", "FE80::1",
                                  "1.2.3.4\x00", "", "\u0661.2.3.4"])
def test_texts_not_made_of_address_characters_are_refused(text: str) -> None:
    grouped = group([Ban("198.51.100.7", "sshd", NOW, 60), Ban(text, "sshd", NOW, 60)], NOW)
    with pytest.raises(ValueError, match="not a canonical address"):
        plain_addresses(grouped)


@pytest.mark.parametrize("text", ["10.0.0.0/33", "::/129", "10.0.0.0/-1"])
def test_impossible_prefix_lengths_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a canonical address"):
        group([Ban(text, "sshd", NOW, 60)], NOW)
    with pytest.raises(ValueError, match="not a canonical address"):
        group_keys([BanKey(text, "sshd")])


# --- friends-only services ----------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(service=names, jail=names, version=st.sampled_from([4, 6]),
       prefixlen=st.integers(0, 128))
def test_a_services_sets_never_bear_a_jails_set_name(service: str, jail: str, version: int,
                                                     prefixlen: int) -> None:
    """A jail named like "friends-ssh" or "ssh-friends4" must not capture (or lose) the
    friends of a service: its sets end otherwise, whatever the names."""
    jail_sets = {allow_name(jail, 4), allow_name(jail, 6),
                 SetKey(jail, version, min(prefixlen, 32 if version == 4 else 128)).name}
    assert not {friends_name(service, 4), friends_name(service, 6)} & jail_sets


def test_friends_rules_drop_whoever_is_not_a_friend_in_each_ip_version() -> None:
    service = FriendsOnly("ssh", ports=(22, (2000, 2010)), protocol="all")
    rules = [r["add"]["rule"] for r in friends_rules(service)]
    assert [r["chain"] for r in rules] == ["input", "input"]
    l4 = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                    "right": {"set": ["tcp", "udp", "sctp", "udplite"]}}}
    dport = {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
                       "right": {"set": [22, {"range": [2000, 2010]}]}}}
    for rule, proto, version in zip(rules, ("ip", "ip6"), (4, 6), strict=True):
        assert rule["expr"] == [
            l4, dport,
            {"match": {"op": "!=", "left": {"payload": {"protocol": proto, "field": "saddr"}},
                       "right": f"@ssh-friends{version}"}},
            {"drop": None},
        ]


def _named(commands: list[Any], verb: str, kind: str) -> list[str]:
    return [c[verb][kind]["name"] for c in commands if verb in c and kind in c[verb]]


def test_skeleton_drops_strangers_before_any_jail_and_refills_lists_in_place() -> None:
    jail = JailFirewall("sshd", ports=(22,), allow=(ip_network("10.0.0.0/24"),
                                                      ip_network("10.0.0.7/32")))
    service = FriendsOnly("ssh", ports=(22,), friends=(ip_network("2001:db8::1/128"),))
    listing = Listing(chains={"input", "jail-sshd", "jail-gone"},
                      sets={"sshd-v4": [], "sshd-allow4": [], "ssh-friends4": [],
                            "old-friends6": [], "gone-allow4": []})
    commands, keys = skeleton({"sshd": jail}, listing, set(), forward_all=False,
                              services={"ssh": service})
    assert keys == {SetKey("sshd", 4, 32), SetKey("sshd", 6, 128)}
    # lists that stay are flushed and refilled, never deleted: only what is gone goes
    assert _named(commands, "delete", "set") == ["gone-allow4", "old-friends6"]
    assert _named(commands, "flush", "set") == ["ssh-friends4", "sshd-allow4"]
    filled = {c["add"]["element"]["name"]: c["add"]["element"]["elem"]
              for c in commands if "element" in c.get("add", {})}
    assert filled == {"ssh-friends6": ["2001:db8::1"],
                      "sshd-allow4": [{"prefix": {"addr": "10.0.0.0", "len": 24}}]}
    # every list set is defined, including the empty ones (an empty friends set drops all)
    assert {"ssh-friends4", "ssh-friends6", "sshd-allow4", "sshd-allow6"} <= set(
        _named(commands, "add", "set"))
    input_rules = [c["add"]["rule"]["expr"] for c in commands
                   if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == "input"]
    assert [r[-1] for r in input_rules] == [{"drop": None}, {"drop": None},
                                            {"jump": {"target": "jail-sshd"}}]
    assert _named(commands, "delete", "chain") == ["jail-gone"]
