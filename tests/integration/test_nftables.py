"""nftables specifics against a real kernel, each test inside its own throw-away network namespace.

The Backend contract itself (shared with ipset and iptables) is in test_backends_contract.py;
here: the table's layout (friends-only sets and rules included), all-or-nothing batches, the registry, value checks (hostile address
texts never reach nft), the forward path through a Docker-style DNAT, interval sets at scale,
and the probe checked against nft's own words.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from banish.actions import BackendError, BackendOptions, JailFirewall, create, resolve
from banish.actions.base import BanEntry, FriendsOnly, entries, key_entries
from banish.actions.nftables import NftablesBackend
from banish.errors import ConfigError
from banish.events import PERMANENT, Ban, BanKey
from tests.integration.netns import (
    Namespace,
    connect,
    skip_reason,
    tcp_server,
)
from tests.integration.probes import (
    NOW,
    SSHD,
    NftProbe,
    ban,
    close_to,
    key,
    namespace_or_skip,
    routed,
    run,
)

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@pytest.fixture
def ns() -> Iterator[Namespace]:
    yield from namespace_or_skip()


# --- nftables specifics -------------------------------------------------------------------------


def test_nft_layout_allow_rules_come_first_and_sets_have_the_right_flags(ns: Namespace) -> None:
    backend = create("nftables", BackendOptions(netns=ns.name))
    run(backend.start([SSHD, JailFirewall("all", protocol="all", forward=True)]))
    run(backend.ban([ban("203.0.113.0/24"), ban("2001:db8::/64")], NOW))
    objs = ns.nft_json("list", "table", "inet", "banish")
    sets = {o["set"]["name"]: o["set"] for o in objs if "set" in o}
    assert sets["sshd-v4"]["flags"] == ["timeout"]
    assert sets["sshd-v4-24"]["flags"] == ["interval", "timeout"]
    assert sets["sshd-v6-64"]["type"] == "ipv6_addr"
    assert sets["sshd-allow4"]["elem"] == [{"prefix": {"addr": "192.0.2.128", "len": 25}}]
    chains = {o["chain"]["name"]: o["chain"] for o in objs if "chain" in o}
    assert chains["input"]["hook"] == "input" and chains["forward"]["hook"] == "forward"
    rules = [o["rule"] for o in objs if "rule" in o and o["rule"]["chain"] == "jail-sshd"]
    targets = [r["expr"][0]["match"]["right"] for r in rules]
    assert targets[:2] == ["@sshd-allow4", "@sshd-allow6"]
    assert {"@sshd-v4", "@sshd-v6", "@sshd-v4-24", "@sshd-v6-64"} == set(targets[2:])
    forward = [o["rule"] for o in objs if "rule" in o and o["rule"]["chain"] == "forward"]
    assert [r["expr"][-1] for r in forward] == [{"jump": {"target": "jail-all"}}]


def test_nft_friends_only_sets_and_drop_rules_open_the_input_chain(ns: Namespace) -> None:
    backend = create("nftables", BackendOptions(netns=ns.name))
    friends = (ip_network("10.0.0.0/24"), ip_network("10.0.0.7/32"))
    run(backend.start([SSHD], [FriendsOnly("ssh", ports=(22,), friends=friends)]))
    objs = ns.nft_json("list", "table", "inet", "banish")
    sets = {o["set"]["name"]: o["set"] for o in objs if "set" in o}
    assert sets["ssh-friends4"]["flags"] == ["interval"]
    assert sets["ssh-friends4"]["elem"] == [{"prefix": {"addr": "10.0.0.0", "len": 24}}]
    assert "elem" not in sets["ssh-friends6"]  # no IPv6 friend: every IPv6 packet dropped
    rules = [o["rule"]["expr"] for o in objs if "rule" in o and o["rule"]["chain"] == "input"]
    assert [r[-2]["match"]["right"] for r in rules[:2]] == ["@ssh-friends4", "@ssh-friends6"]
    assert [r[-2]["match"]["op"] for r in rules[:2]] == ["!=", "!="]
    assert rules[2][-1] == {"jump": {"target": "jail-sshd"}}
    run(backend.start([SSHD]))  # the service gone, its sets too
    names = {o["set"]["name"] for o in ns.nft_json("list", "table", "inet", "banish") if "set" in o}
    assert not any("friends" in name for name in names)


def test_nft_failed_batch_applies_nothing(ns: Namespace) -> None:
    backend = create("nftables", BackendOptions(netns=ns.name))
    run(backend.start([SSHD]))
    run(backend.ban([ban("203.0.113.0/24")], NOW))
    NftProbe(ns).delete_set_by_hand("sshd", "sshd-v4-24")  # behind the backend's back
    with pytest.raises(BackendError, match="nft -j -f -"):
        run(backend.ban([ban("198.51.100.7"), ban("198.51.100.0/24")], NOW))
    assert NftProbe(ns).bans("sshd") == {}  # the host ban in the same batch did not land either
    run(backend.reconcile([ban("198.51.100.7"), ban("198.51.100.0/24")], NOW))  # the repair
    assert set(NftProbe(ns).bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("198.51.100.0/24"),
    }


def test_registry_auto_null_and_errors(ns: Namespace, caplog: pytest.LogCaptureFixture) -> None:
    assert resolve("auto", BackendOptions(netns=ns.name)) == "nftables"
    with pytest.raises(ConfigError, match="no firewall backend works"):
        resolve("auto", BackendOptions(netns=ns.name + "-missing"))
    with pytest.raises(ConfigError, match="unknown firewall backend 'pf'"):
        create("pf")
    caplog.set_level(logging.INFO, logger="banish.actions.null")
    null = create("null")
    run(null.start([SSHD]))
    run(null.ban([ban("198.51.100.7")], NOW))
    assert "ban sshd 198.51.100.7 for 600s" in caplog.text
    assert NftProbe(ns).tables() == set()  # the null backend touched nothing


def test_values_are_checked_before_any_firewall_sees_them() -> None:
    # BanEntry: the working form ipset and iptables make of a Ban
    assert entries([Ban("192.0.2.1", "x", NOW - 100, 600), Ban("192.0.2.2", "x", NOW - 600, 600),
                    Ban("2001:db8::/64", "x", NOW, PERMANENT)], NOW) == [
        BanEntry(ip_address("192.0.2.1"), "x", 500), BanEntry(ip_network("2001:db8::/64"), "x")]
    assert key_entries([BanKey("192.0.2.0/24", "x")]) == [BanEntry(ip_network("192.0.2.0/24"), "x")]
    with pytest.raises(ValueError, match="expires_in"):
        BanEntry(ip_address("192.0.2.1"), "sshd", 0)
    with pytest.raises(ValueError, match="expires_in"):
        BanEntry(ip_address("192.0.2.1"), "sshd", float("inf"))
    with pytest.raises(TypeError):
        BanEntry("192.0.2.1", "sshd")  # type: ignore[arg-type]
    assert BanEntry(ip_network("192.0.2.1/32"), "x").address == ip_address("192.0.2.1")
    assert BanEntry(ip_network("::ffff:192.0.2.0/120"), "x").network == ip_network("192.0.2.0/24")
    with pytest.raises(ConfigError, match="jail name"):
        JailFirewall("bad name; rm")
    with pytest.raises(ConfigError, match="port"):
        JailFirewall("x", ports=((30, 20),))
    with pytest.raises(ConfigError, match="blocktype"):
        JailFirewall("x", blocktype="tarpit")  # type: ignore[arg-type]


def test_packets_forwarded_docker_style_published_port(ns: Namespace) -> None:
    """client -> router (DNAT 8080 -> server:80, as Docker publishes) -> server.

    The jail names the published port 8080; the forward chain must match it although the
    packet it sees already carries port 80.
    """
    router = ns
    with routed(router) as (client, server):
        router.nft(
            "-f",
            "-",
            stdin=(
                "table ip docker_like {\n chain pre { type nat hook prerouting priority dstnat; "
                "tcp dport 8080 dnat to 10.211.0.2:80; }\n}\n"
            ),
        )
        backend = create("nftables", BackendOptions(netns=router.name, forward=True))
        probes = [("10.210.0.2", "10.210.0.1", 8080), ("10.210.0.3", "10.210.0.1", 8080)]
        with tcp_server(server, [80]):
            run(backend.start([JailFirewall("app", ports=(8080,))]))
            assert connect(client, probes, timeout=5) == ["ok", "ok"]
            run(backend.ban([ban("10.210.0.2", "app")], NOW))
            assert connect(client, probes) == ["refused", "ok"]
            run(backend.stop())
            assert connect(client, probes) == ["ok", "ok"]
        assert "docker_like" in router.nft("list", "tables")


@pytest.mark.parametrize("path", ["asked", "three-step"])
def test_new_ban_over_a_leftover_element_gets_at_least_its_time(ns: Namespace, path: str) -> None:
    """A failed unban or a hand-made element can leave an address in the set with a short
    timeout; a new ban of it must not end with that short time. The kernel is asked once
    whether one ``add`` extends a timeout ("asked"); older kernels need the three-step
    refresh, forced here so that path runs on any kernel."""
    backend = NftablesBackend(netns=ns.name)
    run(backend.start([SSHD]))
    if path == "three-step":
        backend._add_extends = False
    ns.nft("add", "element", "inet", "banish", "sshd-v4", "{ 198.51.100.9 timeout 20s }")
    ns.nft("add", "element", "inet", "banish", "sshd-v6", "{ 2001:db8::9 timeout 20s }")
    run(backend.ban([ban("198.51.100.9", left=3600), ban("2001:db8::9", left=900),
                     ban("198.51.100.10", left=600)], NOW))
    bans = NftProbe(ns).bans("sshd")
    assert close_to(bans[ip_network("198.51.100.9/32")], 3600)
    assert close_to(bans[ip_network("2001:db8::9/128")], 900)
    assert close_to(bans[ip_network("198.51.100.10/32")], 600)
    sets = {o["set"]["name"] for o in ns.nft_json("list", "table", "inet", "banish") if "set" in o}
    assert "timeout-probe" not in sets  # the scratch set is gone after the question


def test_texts_that_are_not_addresses_are_refused_before_nft_runs(tmp_path: Path) -> None:
    """Address texts reach nft's JSON pasted between quotes (the bulk path), so anything
    that is not made of address characters -- or cannot be placed in a set -- must be refused
    before a single byte is written. A fake nft records every call it gets."""
    calls = tmp_path / "calls"
    fake = tmp_path / "nft"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncat > /dev/null\n')
    fake.chmod(0o755)
    backend = NftablesBackend(nft=str(fake))
    backend._jails, backend._add_extends = {"sshd": SSHD}, True  # started, without nft
    good = ban("198.51.100.9")
    hostile = ['1.2.3.4", "x', "1.2.3.4\n", "10.0.0.1 timeout 1s", "1.2.3.4\\",
               "2001:DB8::1", "10.0.0.0/99", "10.0.0.0/x", "::/129"]
    for text in hostile:
        with pytest.raises(ValueError, match=r"not a canonical address|invalid literal"):
            run(backend.ban([good, Ban(text, "sshd", NOW, 600)], NOW))
        with pytest.raises(ValueError, match=r"not a canonical address|invalid literal"):
            run(backend.unban([key("198.51.100.9"), BanKey(text, "sshd")]))
        with pytest.raises(ValueError, match=r"not a canonical address|invalid literal"):
            run(backend.reconcile([good, Ban(text, "sshd", NOW, 600)], NOW))
    with pytest.raises(ValueError, match="no end in sight"):
        run(backend.ban([Ban("198.51.100.9", "sshd", float("inf"), 600)], NOW))
    assert not calls.exists()
    run(backend.ban([good], NOW))  # the fake does see what passes
    assert calls.read_text() == "-j -f -\n"


@pytest.mark.parametrize("path", ["asked", "three-step"])
def test_many_networks_ban_and_lift_quickly_and_exactly(ns: Namespace, path: str) -> None:
    """nft handles interval sets in time that grows with set size times batch size; banish
    works around it (network sets refreshed without deleting what is absent; lifting many
    networks rebuilds the set). 3,000 /24s would take nft's plain way tens of seconds."""
    backend = NftablesBackend(netns=ns.name, timeout=30)
    run(backend.start([SSHD]))
    if path == "three-step":
        backend._add_extends = False
    nets = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(3000)]
    run(backend.ban([ban(n, left=600) for n in nets[:100]], NOW))
    run(backend.ban([ban(n, left=3600) for n in nets], NOW))  # 100 already there
    run(backend.ban([ban("2001:db8::/64", left=None), ban("198.51.100.1")], NOW))
    bans = NftProbe(ns).bans("sshd")
    assert len(bans) == 3002 and close_to(bans[ip_network(nets[0])], 3600)
    run(backend.unban([key(n) for n in nets[:2500]]))  # over the rebuild threshold
    bans = NftProbe(ns).bans("sshd")
    assert set(bans) == {ip_network(n) for n in nets[2500:]} | {
        ip_network("2001:db8::/64"), ip_network("198.51.100.1/32")}
    assert all(close_to(bans[ip_network(n)], 3600, slack=30) for n in nets[2500:])
    assert bans[ip_network("2001:db8::/64")] is None


def test_probe_reads_what_it_should(ns: Namespace) -> None:
    """The probe is the tests' eyes: check it against nft's own words once."""
    ns.nft(
        "-f",
        "-",
        stdin=(
            "table inet banish {\n set j-v4 { type ipv4_addr; flags timeout; "
            "elements = { 192.0.2.1 timeout 100s, 192.0.2.2 }; }\n"
            " set j-v4-24 { type ipv4_addr; flags interval, timeout; elements = { 192.0.2.0/24 }; }\n}\n"
        ),
    )
    bans = NftProbe(ns).bans("j")
    assert set(bans) == {
        ip_network("192.0.2.1/32"),
        ip_network("192.0.2.2/32"),
        ip_network("192.0.2.0/24"),
    }
    assert (
        close_to(bans[ip_network("192.0.2.1/32")], 100) and bans[ip_network("192.0.2.2/32")] is None
    )


def test_nft_that_hangs_or_is_missing_is_a_backend_error(tmp_path: Path) -> None:
    hang = tmp_path / "nft"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    slow = NftablesBackend(nft=str(hang), timeout=0.3)
    with pytest.raises(BackendError, match=r"/nft -j .* timed out after 0\.3 s and was killed"):
        run(slow.start([SSHD]))
    with pytest.raises(BackendError, match="cannot run"):
        run(NftablesBackend(nft=str(tmp_path / "missing")).start([SSHD]))
