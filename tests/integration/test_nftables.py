"""Firewall backends against a real kernel, each inside its own throw-away network namespace.

The contract tests are parametrized over `PROBES`: a future ipset/iptables backend joins by
adding a probe (how to read and disturb its state by hand), and must then pass the same tests.
Packet tests check what matters in the end: who can still connect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from banish.actions import (
    Backend,
    BackendError,
    BackendOptions,
    BanEntry,
    JailFirewall,
    Network,
    create,
    resolve,
)
from banish.actions.nftables import NftablesBackend
from banish.errors import ConfigError
from tests.integration.netns import (
    Namespace,
    connect,
    link,
    namespace,
    skip_reason,
    tcp_server,
    wait_until,
)

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

SSHD = JailFirewall("sshd", ports=(22, (2000, 2999)), allow=(ip_network("192.0.2.128/25"),))
WEB = JailFirewall("web", ports=(80, 443), blocktype="drop")


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


# --- probes: reading and disturbing one backend's state by hand ---------------------------------


class NftProbe:
    """Looks at ``table inet banish`` with nft itself, not through the backend under test."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns

    def tables(self) -> set[tuple[str, str]]:
        return {
            (o["table"]["family"], o["table"]["name"])
            for o in self.ns.nft_json("list", "tables")
            if "table" in o
        }

    def sets(self) -> dict[str, list[Any]]:
        objs = self.ns.nft_json("list", "table", "inet", "banish")
        return {o["set"]["name"]: o["set"].get("elem", []) for o in objs if "set" in o}

    def bans(self, jail: str) -> dict[Network, float | None]:
        """Every banned network of ``jail`` with the kernel's time left (None = permanent)."""
        out: dict[Network, float | None] = {}
        for name, elems in self.sets().items():
            if not name.startswith(f"{jail}-v"):
                continue
            for item in elems:
                val, left = item, None
                if isinstance(item, dict) and "elem" in item:
                    val, left = item["elem"]["val"], item["elem"].get("expires")
                if isinstance(val, dict):
                    val = f"{val['prefix']['addr']}/{val['prefix']['len']}"
                out[ip_network(val)] = left
        return out

    def flush_by_hand(self, jail: str) -> None:
        for name in self.sets():
            if name.startswith(f"{jail}-v"):
                self.ns.nft("flush", "set", "inet", "banish", name)

    def add_by_hand(self, jail: str, address: str) -> None:
        version = ip_address(address).version
        self.ns.nft("add", "element", "inet", "banish", f"{jail}-v{version}", "{", address, "}")

    def drop_structure_by_hand(self) -> None:
        self.ns.nft("delete", "table", "inet", "banish")

    def add_foreign(self) -> None:
        self.ns.nft(
            "-f",
            "-",
            stdin="table inet other {\n set keep { type ipv4_addr; elements = { 10.9.9.9 }; }\n"
            " chain c { type filter hook input priority 0; policy accept; }\n}\n"
            "table ip banish {\n chain c {\n }\n}\n",
        )

    def foreign_intact(self) -> bool:
        other = self.ns.nft("list", "table", "inet", "other")
        return "10.9.9.9" in other and "chain c" in other and ("ip", "banish") in self.tables()

    def started(self, jails: list[JailFirewall]) -> bool:
        if ("inet", "banish") not in self.tables():
            return False
        objs = self.ns.nft_json("list", "table", "inet", "banish")
        chains = {o["chain"]["name"] for o in objs if "chain" in o}
        sets = {o["set"]["name"] for o in objs if "set" in o}
        return "input" in chains and all(
            f"jail-{j.name}" in chains
            and {f"{j.name}-v4", f"{j.name}-v6", f"{j.name}-allow4", f"{j.name}-allow6"} <= sets
            for j in jails
        )

    def stopped(self) -> bool:
        return ("inet", "banish") not in self.tables()


PROBES = {"nftables": NftProbe}


@dataclass
class Firewall:
    backend: Backend
    probe: NftProbe
    ns: Namespace


@pytest.fixture
def ns() -> Iterator[Namespace]:
    try:
        with namespace() as made:
            yield made
    except RuntimeError as exc:  # e.g. a container without CAP_SYS_ADMIN
        if "ip netns add" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.fixture(params=sorted(PROBES))
def fw(request: pytest.FixtureRequest, ns: Namespace) -> Firewall:
    backend = create(request.param, BackendOptions(netns=ns.name))
    return Firewall(backend, PROBES[request.param](ns), ns)


def entry(addr: str, jail: str = "sshd", expires_in: float | None = 600) -> BanEntry:
    parsed = ip_network(addr) if "/" in addr else ip_address(addr)
    return BanEntry(parsed, jail, expires_in)


def close_to(left: float | None, want: float, slack: float = 5) -> bool:
    return left is not None and want - slack <= left <= want


# --- contract tests -----------------------------------------------------------------------------


def test_start_creates_structure_and_stop_removes_only_its_table(fw: Firewall) -> None:
    fw.probe.add_foreign()
    run(fw.backend.start([SSHD, WEB]))
    assert fw.probe.started([SSHD, WEB])
    assert fw.probe.bans("sshd") == {}
    run(fw.backend.ban([entry("198.51.100.7")]))
    run(fw.backend.stop())
    assert fw.probe.stopped()
    assert fw.probe.foreign_intact()
    run(fw.backend.stop())  # stopping twice is harmless
    assert fw.probe.foreign_intact()


def test_ban_ipv4_ipv6_and_networks_with_timeouts(fw: Firewall) -> None:
    run(fw.backend.start([SSHD, WEB]))
    run(
        fw.backend.ban(
            [
                entry("198.51.100.7"),
                entry("2001:db8::7", expires_in=300),
                entry("203.0.113.0/24", expires_in=1200),
                entry("2001:db8:1:2::/64"),
                entry("198.51.100.9", expires_in=None),
                entry("::ffff:198.51.100.10", jail="web"),
            ]
        )
    )
    bans = fw.probe.bans("sshd")
    assert set(bans) == {
        ip_network(a)
        for a in (
            "198.51.100.7/32",
            "2001:db8::7/128",
            "203.0.113.0/24",
            "2001:db8:1:2::/64",
            "198.51.100.9/32",
        )
    }
    assert close_to(bans[ip_network("198.51.100.7/32")], 600)
    assert close_to(bans[ip_network("2001:db8::7/128")], 300)
    assert close_to(bans[ip_network("203.0.113.0/24")], 1200)
    assert close_to(bans[ip_network("2001:db8:1:2::/64")], 600)
    assert bans[ip_network("198.51.100.9/32")] is None
    # an IPv4-mapped IPv6 address is banned as the IPv4 address the kernel sees
    assert set(fw.probe.bans("web")) == {ip_network("198.51.100.10/32")}


def test_overlapping_bans_coexist_with_their_own_timeouts(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    run(fw.backend.ban([entry("10.20.0.0/16", expires_in=100)]))
    run(
        fw.backend.ban(
            [entry("10.20.30.0/24", expires_in=200), entry("10.20.30.40", expires_in=300)]
        )
    )
    run(
        fw.backend.ban(
            [entry("2001:db8::/32", expires_in=100), entry("2001:db8::/64", expires_in=200)]
        )
    )
    bans = fw.probe.bans("sshd")
    for net, want in (
        ("10.20.0.0/16", 100),
        ("10.20.30.0/24", 200),
        ("10.20.30.40/32", 300),
        ("2001:db8::/32", 100),
        ("2001:db8::/64", 200),
    ):
        assert close_to(bans.get(ip_network(net)), want), net


def test_reban_refreshes_time_left_and_duplicates_keep_the_longest(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    run(
        fw.backend.ban(
            [entry("198.51.100.7", expires_in=600), entry("203.0.113.0/24", expires_in=60)]
        )
    )
    run(
        fw.backend.ban(
            [entry("198.51.100.7", expires_in=7200), entry("203.0.113.0/24", expires_in=30)]
        )
    )
    bans = fw.probe.bans("sshd")
    assert close_to(bans[ip_network("198.51.100.7/32")], 7200)
    assert close_to(bans[ip_network("203.0.113.0/24")], 30)
    run(
        fw.backend.ban(
            [entry("198.51.100.8", expires_in=50), entry("198.51.100.8", expires_in=500)]
        )
    )
    assert close_to(fw.probe.bans("sshd")[ip_network("198.51.100.8/32")], 500)
    run(
        fw.backend.ban(
            [entry("198.51.100.8", expires_in=None), entry("198.51.100.8", expires_in=500)]
        )
    )
    assert fw.probe.bans("sshd")[ip_network("198.51.100.8/32")] is None


def test_kernel_expires_a_short_ban(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    run(
        fw.backend.ban([entry("198.51.100.7", expires_in=2), entry("198.51.100.8", expires_in=600)])
    )
    assert ip_network("198.51.100.7/32") in fw.probe.bans("sshd")
    # the kernel's own timer, so poll (bounded) rather than trusting a fixed sleep
    assert wait_until(lambda: ip_network("198.51.100.7/32") not in fw.probe.bans("sshd"), limit=10)
    assert ip_network("198.51.100.8/32") in fw.probe.bans("sshd")


def test_unban_removes_and_tolerates_what_is_not_banned(fw: Firewall) -> None:
    run(fw.backend.start([SSHD, WEB]))
    run(
        fw.backend.ban(
            [
                entry("198.51.100.7"),
                entry("2001:db8::7"),
                entry("203.0.113.0/24"),
                entry("198.51.100.8"),
                entry("198.51.100.7", jail="web"),
            ]
        )
    )
    run(
        fw.backend.unban(
            [
                entry("198.51.100.7"),
                entry("2001:db8::7"),
                entry("203.0.113.0/24"),
                entry("198.51.100.99"),  # never banned
                entry("10.0.0.0/8"),  # a prefix length never used
                entry("2001:db8:5::/64"),
            ]
        )
    )
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.8/32")}
    assert set(fw.probe.bans("web")) == {ip_network("198.51.100.7/32")}
    run(fw.backend.unban([entry("198.51.100.7")]))  # twice is fine too


def test_reconcile_restores_removes_and_corrects(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    active = [
        entry("198.51.100.7"),
        entry("2001:db8::7"),
        entry("203.0.113.0/24"),
        entry("198.51.100.9", expires_in=None),
    ]
    run(fw.backend.ban([*active, entry("198.51.100.8", expires_in=5000)]))
    fw.probe.flush_by_hand("sshd")
    fw.probe.add_by_hand("sshd", "192.0.2.66")  # an extra, permanent
    assert set(fw.probe.bans("sshd")) == {ip_network("192.0.2.66/32")}
    corrected = entry("198.51.100.8", expires_in=50)
    run(fw.backend.reconcile([*active, corrected]))
    bans = fw.probe.bans("sshd")
    assert set(bans) == {e.network for e in [*active, corrected]}
    assert close_to(bans[ip_network("198.51.100.8/32")], 50)
    assert bans[ip_network("198.51.100.9/32")] is None
    # time left that drifted (or a permanent ban that became timed) is rewritten in place
    run(
        fw.backend.reconcile(
            [
                entry("198.51.100.7", expires_in=3000),
                entry("198.51.100.9", expires_in=100),
                entry("203.0.113.0/24"),
            ]
        )
    )
    bans = fw.probe.bans("sshd")
    assert close_to(bans[ip_network("198.51.100.7/32")], 3000)
    assert close_to(bans[ip_network("198.51.100.9/32")], 100)
    run(fw.backend.reconcile([entry("198.51.100.7")]))  # a prefix set no longer needed goes
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.7/32")}


def test_reconcile_rebuilds_a_table_deleted_by_hand(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    run(fw.backend.ban([entry("198.51.100.7"), entry("203.0.113.0/24")]))
    fw.probe.drop_structure_by_hand()
    run(fw.backend.reconcile([entry("198.51.100.7"), entry("203.0.113.0/24")]))
    assert fw.probe.started([SSHD])
    assert set(fw.probe.bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("203.0.113.0/24"),
    }


def test_restart_reload_keeps_bans_of_remaining_jails(fw: Firewall) -> None:
    run(fw.backend.start([SSHD, WEB]))
    run(
        fw.backend.ban(
            [entry("198.51.100.7"), entry("203.0.113.0/24"), entry("198.51.100.8", jail="web")]
        )
    )
    again = create(
        resolve("auto", BackendOptions(netns=fw.ns.name)), BackendOptions(netns=fw.ns.name)
    )
    run(again.start([SSHD]))  # a daemon restarted with the web jail removed
    assert set(fw.probe.bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("203.0.113.0/24"),
    }
    assert fw.probe.bans("web") == {}
    run(again.unban([entry("203.0.113.0/24")]))  # knows the /24 set it did not create
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.7/32")}


def test_calls_for_jails_not_started_are_refused(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    with pytest.raises(ValueError, match="nope"):
        run(fw.backend.ban([entry("198.51.100.7", jail="nope")]))
    with pytest.raises(ValueError, match="share a name"):
        run(fw.backend.start([SSHD, SSHD]))


# --- nftables specifics -------------------------------------------------------------------------


def test_nft_layout_allow_rules_come_first_and_sets_have_the_right_flags(ns: Namespace) -> None:
    backend = create("nftables", BackendOptions(netns=ns.name))
    run(backend.start([SSHD, JailFirewall("all", protocol="all", forward=True)]))
    run(backend.ban([entry("203.0.113.0/24"), entry("2001:db8::/64")]))
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


def test_nft_failed_batch_applies_nothing(ns: Namespace) -> None:
    backend = create("nftables", BackendOptions(netns=ns.name))
    run(backend.start([SSHD]))
    run(backend.ban([entry("203.0.113.0/24")]))
    ns.nft(
        "delete", "rule", "inet", "banish", "jail-sshd", "handle", _rule_handle(ns, "@sshd-v4-24")
    )
    ns.nft("delete", "set", "inet", "banish", "sshd-v4-24")  # behind the backend's back
    with pytest.raises(BackendError, match="nft -j -f -"):
        run(backend.ban([entry("198.51.100.7"), entry("198.51.100.0/24")]))
    assert NftProbe(ns).bans("sshd") == {}  # the host ban in the same batch did not land either
    run(backend.reconcile([entry("198.51.100.7"), entry("198.51.100.0/24")]))  # the repair
    assert set(NftProbe(ns).bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("198.51.100.0/24"),
    }


def _rule_handle(ns: Namespace, target: str) -> str:
    for o in ns.nft_json("-a", "list", "chain", "inet", "banish", "jail-sshd"):
        if "rule" in o and o["rule"]["expr"][0]["match"]["right"] == target:
            return str(o["rule"]["handle"])
    raise AssertionError(f"no rule for {target}")


def test_registry_auto_null_and_errors(ns: Namespace, caplog: pytest.LogCaptureFixture) -> None:
    assert resolve("auto", BackendOptions(netns=ns.name)) == "nftables"
    with pytest.raises(ConfigError, match="no firewall backend works"):
        resolve("auto", BackendOptions(netns=ns.name + "-missing"))
    with pytest.raises(ConfigError, match="unknown firewall backend 'pf'"):
        create("pf")
    caplog.set_level(logging.INFO, logger="banish.actions.null")
    null = create("null")
    run(null.start([SSHD]))
    run(null.ban([entry("198.51.100.7")]))
    assert "ban sshd 198.51.100.7 for 600s" in caplog.text
    assert NftProbe(ns).tables() == set()  # the null backend touched nothing


def test_values_are_checked_before_any_firewall_sees_them() -> None:
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


# --- packets ------------------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[Namespace, Namespace]]:
    """A server namespace and a client namespace on one link with many client addresses."""
    with namespace() as server, namespace() as client:
        link(
            server,
            client,
            ["10.200.0.1/16", "fd00:200::1/48"],
            [
                "10.200.1.2/16",
                "10.200.1.3/16",
                "10.200.2.7/16",
                "10.200.3.9/16",
                "10.200.3.10/16",
                "fd00:200:0:1::2/48",
                "fd00:200::3/48",
                "fd00:200:0:2::5/48",
            ],
        )
        yield server, client


@pytest.mark.parametrize("kind", sorted(PROBES))
def test_packets_banned_sources_cannot_connect(
    kind: str, pair: tuple[Namespace, Namespace]
) -> None:
    server, client = pair
    backend = create(kind, BackendOptions(netns=server.name))
    ssh = JailFirewall("ssh", ports=(2222,), allow=(ip_network("10.200.3.9/32"),))
    web = JailFirewall("web", ports=(2224,), blocktype="drop")
    v4, v6 = "10.200.0.1", "fd00:200::1"
    probes = [
        ("10.200.1.2", v4, 2222),  # 0 banned host
        ("10.200.1.2", v4, 2223),  # 1 banned host, port outside the jail
        ("10.200.1.3", v4, 2222),  # 2 clean
        ("10.200.2.7", v4, 2222),  # 3 inside a banned /24
        ("10.200.3.9", v4, 2222),  # 4 allowed, although banned and inside a banned /24
        ("10.200.3.10", v4, 2222),  # 5 same /24, not allowed
        ("fd00:200:0:1::2", v6, 2222),  # 6 banned IPv6 host
        ("fd00:200::3", v6, 2222),  # 7 clean IPv6
        ("fd00:200:0:2::5", v6, 2222),  # 8 inside a banned /64
        ("10.200.1.3", v4, 2224),  # 9 banned in the drop jail
    ]
    with tcp_server(server, [2222, 2223, 2224]):
        run(backend.start([ssh, web]))
        # the test can see success; the first contact waits out neighbour discovery
        assert connect(client, probes, timeout=5) == ["ok"] * len(probes)
        run(
            backend.ban(
                [
                    entry("10.200.1.2", "ssh"),
                    entry("10.200.2.0/24", "ssh"),
                    entry("10.200.3.0/24", "ssh"),
                    entry("10.200.3.9", "ssh"),
                    entry("fd00:200:0:1::2", "ssh"),
                    entry("fd00:200:0:2::/64", "ssh"),
                    entry("10.200.1.3", "web"),
                ]
            )
        )
        # 2 s: Linux (6.18 here) let the first ICMPv6 error on a SYN pass unheeded; the
        # retransmitted SYN at 1 s meets the second one.
        got = connect(client, probes, timeout=2.0)
        assert got == [
            "refused",
            "ok",
            "ok",
            "refused",
            "ok",
            "refused",
            "refused",
            "ok",
            "refused",
            "timeout",
        ]
        run(backend.stop())
        assert connect(client, probes) == ["ok"] * len(probes)


def test_packets_forwarded_docker_style_published_port(ns: Namespace) -> None:
    """client -> router (DNAT 8080 -> server:80, as Docker publishes) -> server.

    The jail names the published port 8080; the forward chain must match it although the
    packet it sees already carries port 80.
    """
    router = ns
    with namespace() as client, namespace() as server:
        link(
            router, client, ["10.210.0.1/24"], ["10.210.0.2/24", "10.210.0.3/24"], a_dev="to-client"
        )
        link(router, server, ["10.211.0.1/24"], ["10.211.0.2/24"], a_dev="to-server")
        client.run("ip", "route", "add", "default", "via", "10.210.0.1")
        server.run("ip", "route", "add", "default", "via", "10.211.0.1")
        router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
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
            run(backend.ban([entry("10.210.0.2", "app")]))
            assert connect(client, probes) == ["refused", "ok"]
            run(backend.stop())
            assert connect(client, probes) == ["ok", "ok"]
        assert "docker_like" in router.nft("list", "tables")


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
    with pytest.raises(BackendError, match="hung"):
        run(slow.start([SSHD]))
    with pytest.raises(BackendError, match="cannot run"):
        run(NftablesBackend(nft=str(tmp_path / "missing")).start([SSHD]))
