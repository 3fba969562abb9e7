"""ipset and iptables specifics against a real kernel, inside throw-away network namespaces.

The shared contract is in test_backends_contract.py; here: the exact layout (names, set types,
rule order, hooks), batches refused whole, ipset's limits (timeouts, /0, capacity), reshaping
sets and chains banish did not leave that way, undoing half a batch, living beside each other
and nftables, Docker's DOCKER-USER chain, the legacy (non-nft) iptables tools, the registry.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path

import pytest

from banish.actions import BackendError, BackendOptions, JailFirewall, create, names, registry
from banish.actions import iptables as iptables_backend
from banish.actions.base import FriendsOnly
from banish.actions.ipset import LAYOUT as IPSET_LAYOUT
from banish.actions.ipset import IpsetBackend, _seconds, list_name, set_name
from banish.actions.iptables import IptablesBackend
from banish.actions.xtables import fit_name, jump_rules, parse_source_rule
from tests.integration.netns import Namespace, connect, skip_reason, tcp_server
from tests.integration.probes import (
    NOW,
    SSHD,
    WEB,
    IpsetProbe,
    IptablesProbe,
    NftProbe,
    Probe,
    ban,
    close_to,
    ipset_members,
    iptables,
    key,
    namespace_or_skip,
    routed,
    run,
    save,
)

needs_tools = pytest.mark.skipif(
    skip_reason() is not None or shutil.which("ipset") is None or shutil.which("iptables") is None,
    reason=str(skip_reason() or "ipset and iptables are needed (apt install ipset iptables)"),
)


@pytest.fixture
def ns() -> Iterator[Namespace]:
    yield from namespace_or_skip()


# --- pure parts ---------------------------------------------------------------------------------


def test_names_fit_kernel_limits_and_stay_apart() -> None:
    assert fit_name("banish-", "sshd", "-h4", 31) == "banish-sshd-h4"
    a, b = "x" * 60 + "aaaa", "x" * 60 + "bbbb"
    for limit in (28, 31):
        fa, fb = fit_name("banish-", a, "-h4", limit), fit_name("banish-", b, "-h4", limit)
        assert len(fa) == limit == len(fb) and fa != fb
        assert fa.startswith("banish-xxx") and fa.endswith("-h4") and "~" in fa
    assert fit_name("banish-", a, "", 28) == fit_name("banish-", a, "", 28)  # stable
    # a friends-only service may share a jail's name: its chain and sets never do
    for layout in (IPSET_LAYOUT, iptables_backend.LAYOUT):
        for name in ("sshd", a):
            service, jail = layout.service_chain(name), layout.jail_chain(name)
            assert len(service) <= 28 and service != jail and layout.owns(service)
            assert service not in (layout.input, layout.forward)
        assert {list_name(name, v, k) for name in ("sshd", a) for v in (4, 6) for k in "af"
                }.isdisjoint({set_name(name, v, n) for name in ("sshd", a) for v in (4, 6)
                              for n in (False, True)})


def test_ipset_timeouts_are_whole_seconds_never_shorter_and_zero_is_permanent() -> None:
    assert [_seconds(t) for t in (0.2, 1.0, 1.5, 2_147_483, 2_147_483.5, None)] == [
        1,
        1,
        2,
        2_147_483,
        0,  # longer than ipset takes: stored permanent, lifted by the daemon
        0,
    ]


def test_jump_rules_ports_protocols_and_the_forward_path() -> None:
    many = JailFirewall("m", ports=(*range(1, 14), (100, 200), (300, 400)), protocol="all")
    rules = jump_rules(many, "C", forwarded=False)
    assert len(rules) == 8  # 4 protocols x 2 rules: 13 ports + 2 ranges is 17 multiport slots
    assert rules[0] == "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,100:200 -j C"
    assert rules[1] == "-p tcp -m multiport --dports 300:400 -j C"
    assert {r.split()[1] for r in rules} == {"tcp", "udp", "sctp", "udplite"}
    fwd = jump_rules(JailFirewall("f", ports=(8080, (9000, 9001))), "C", forwarded=True)
    assert fwd == [
        "-p tcp -m conntrack --ctorigdstport 8080 -j C",
        "-p tcp -m conntrack --ctorigdstport 9000:9001 -j C",
    ]
    assert jump_rules(JailFirewall("a", protocol="all"), "C", forwarded=False) == ["-j C"]
    assert jump_rules(JailFirewall("u", protocol="udp"), "C", forwarded=True) == ["-p udp -j C"]


def test_save_lines_are_read_back_only_in_the_shapes_written() -> None:
    v4 = "-s 192.0.2.1/32 -j REJECT --reject-with icmp-port-unreachable"
    assert parse_source_rule(v4, 4) == (ip_network("192.0.2.1/32"), "REJECT")
    assert parse_source_rule("-j DROP", 6) == (ip_network("::/0"), "DROP")
    assert parse_source_rule("-s 2001:db8::/64 -j RETURN", 6) == (
        ip_network("2001:db8::/64"),
        "RETURN",
    )
    for other in (
        "-s 192.0.2.1/32 -j REJECT --reject-with tcp-reset",
        "-s 192.0.2.1/32 -p tcp -j DROP",
        "-m set --match-set x src -j DROP",
        "-s 192.0.2.1/32 -j DROP",  # as IPv6: another family
    ):
        assert parse_source_rule(other, 6 if other.endswith("DROP") else 4) is None, other


# --- layout -------------------------------------------------------------------------------------


@needs_tools
def test_ipset_layout_names_types_and_rule_order(ns: Namespace) -> None:
    for version in (4, 6):  # a rule already there stays behind banish's jump
        iptables(ns, version, "-A", "INPUT", "-j", "ACCEPT")
    backend = IpsetBackend(netns=ns.name)
    many = JailFirewall("many", ports=tuple(range(1000, 1020)), protocol="udp")
    run(backend.start([SSHD, JailFirewall("all", protocol="all", forward=True), many]))
    run(backend.ban([ban("203.0.113.0/24"), ban("198.51.100.7", left=None)], NOW))
    sets = ns.run("ipset", "save")
    assert "create banish-sshd-h4 hash:ip family inet " in sets
    assert "create banish-sshd-n6 hash:net family inet6 " in sets
    assert sets.count("maxelem 1048576 timeout 0") == 12
    assert "add banish-sshd-n4 203.0.113.0/24 timeout " in sets
    assert "add banish-sshd-h4 198.51.100.7 timeout 0" in sets
    _, v4 = save(ns, 4)
    assert v4["INPUT"] == ["-j banish-set", "-j ACCEPT"]
    assert v4["FORWARD"] == ["-j banish-set.fwd"]
    assert v4["banish-set"] == [
        "-p tcp -m multiport --dports 22,2000:2999 -j banish-set-sshd",
        "-j banish-set-all",
        "-p udp -m multiport --dports "
        + ",".join(map(str, range(1000, 1015)))
        + " -j banish-set-many",
        "-p udp -m multiport --dports 1015,1016,1017,1018,1019 -j banish-set-many",
    ]
    assert v4["banish-set.fwd"] == ["-j banish-set-all"]
    reject = "-j REJECT --reject-with icmp-port-unreachable"
    assert v4["banish-set-sshd"] == [
        "-m set --match-set banish-sshd-a4 src -j RETURN",
        f"-m set --match-set banish-sshd-h4 src {reject}",
        f"-m set --match-set banish-sshd-n4 src {reject}",
    ]
    assert "create banish-sshd-a4 hash:net family inet hashsize" in sets
    assert "add banish-sshd-a4 192.0.2.128/25\n" in sets
    _, v6 = save(ns, 6)
    assert v6["banish-set-sshd"][:2] == [
        "-m set --match-set banish-sshd-a6 src -j RETURN",
        "-m set --match-set banish-sshd-h6 src -j REJECT --reject-with icmp6-port-unreachable",
    ]


@needs_tools
def test_iptables_layout_one_rule_per_ban_after_the_allow_rules(ns: Namespace) -> None:
    backend = IptablesBackend(netns=ns.name)
    run(backend.start([SSHD, WEB]))
    run(backend.ban([ban("198.51.100.7"), ban("203.0.113.0/24"), ban("2001:db8::7", "web")], NOW))
    _, v4 = save(ns, 4)
    assert v4["INPUT"] == ["-j banish-ipt"]
    assert v4["banish-ipt-sshd"] == [
        "-s 192.0.2.128/25 -j RETURN",
        "-s 198.51.100.7/32 -j REJECT --reject-with icmp-port-unreachable",
        "-s 203.0.113.0/24 -j REJECT --reject-with icmp-port-unreachable",
    ]
    _, v6 = save(ns, 6)
    assert v6["banish-ipt-web"] == ["-s 2001:db8::7/128 -j DROP"]
    # a restart with another verdict rewrites the rules, bans and all
    drop = JailFirewall("sshd", ports=SSHD.ports, allow=SSHD.allow, blocktype="drop")
    run(IptablesBackend(netns=ns.name).start([drop, WEB]))
    _, v4 = save(ns, 4)
    assert v4["banish-ipt-sshd"] == [
        "-s 192.0.2.128/25 -j RETURN",
        "-s 198.51.100.7/32 -j DROP",
        "-s 203.0.113.0/24 -j DROP",
    ]


@needs_tools
def test_friends_only_chains_come_before_every_jail_and_drop_the_rest(ns: Namespace) -> None:
    friends = (ip_network("192.0.2.7/32"), ip_network("2001:db8::/64"))
    service = FriendsOnly("sshd", ports=(22, 2222), friends=friends)
    returns = {
        "set": ("-m set --match-set banish-sshd-f4 src -j RETURN",
                "-m set --match-set banish-sshd-f6 src -j RETURN"),
        "ipt": ("-s 192.0.2.7/32 -j RETURN", "-s 2001:db8::/64 -j RETURN"),
    }
    backends: list[IpsetBackend | IptablesBackend] = [
        IpsetBackend(netns=ns.name), IptablesBackend(netns=ns.name)]
    for backend, tag in zip(backends, ("set", "ipt"), strict=True):
        run(backend.start([SSHD], [service]))
        for version in (4, 6):
            _, rules = save(ns, version)
            assert rules[f"banish-{tag}"] == [
                f"-p tcp -m multiport --dports 22,2222 -j banish-{tag}.f-sshd",
                f"-p tcp -m multiport --dports 22,2000:2999 -j banish-{tag}-sshd",
            ]
            assert rules[f"banish-{tag}.f-sshd"] == [returns[tag][version == 6], "-j DROP"]
        run(backend.start([SSHD]))  # the service gone: its chain (and sets) too
        assert not any(".f-" in chain for v in (4, 6) for chain in save(ns, v)[0])
        assert not any(name.endswith(("-f4", "-f6")) for name in ipset_members(ns))
        run(backend.stop())


# --- batches refused whole ------------------------------------------------------------------------


@needs_tools
def test_ipset_batch_with_a_missing_set_applies_nothing(ns: Namespace) -> None:
    backend = IpsetBackend(netns=ns.name)
    run(backend.start([SSHD]))
    # behind the backend's back: the rule first, or the kernel refuses to destroy the set
    iptables(ns, 4, "-F", "banish-set-sshd")
    ns.run("ipset", "destroy", "banish-sshd-n4")
    with pytest.raises(BackendError, match="banish-sshd-n4 is missing"):
        run(backend.ban([ban("198.51.100.7"), ban("198.51.100.0/24")], NOW))
    assert IpsetProbe(ns).bans("sshd") == {}  # the host ban in the same batch did not land
    run(backend.unban([key("198.51.100.0/24")]))  # nothing to lift there: no error
    run(backend.reconcile([ban("198.51.100.7"), ban("198.51.100.0/24")], NOW))  # the repair
    assert set(IpsetProbe(ns).bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("198.51.100.0/24"),
    }
    assert IpsetProbe(ns).started([SSHD])


@needs_tools
def test_ipset_batch_that_would_overflow_a_set_applies_nothing(ns: Namespace) -> None:
    backend = IpsetBackend(netns=ns.name, maxelem=4)
    run(backend.start([SSHD]))
    run(backend.ban([ban(f"198.51.100.{i}") for i in range(3)], NOW))
    with pytest.raises(BackendError, match="at most 4"):
        run(backend.ban([ban("2001:db8::1"), ban("198.51.100.10"), ban("198.51.100.11")], NOW))
    assert len(IpsetProbe(ns).bans("sshd")) == 3


@needs_tools
def test_iptables_batch_with_a_missing_chain_applies_nothing(ns: Namespace) -> None:
    backend = IptablesBackend(netns=ns.name)
    run(backend.start([SSHD]))
    iptables(ns, 6, "-F", "banish-ipt")
    iptables(ns, 6, "-X", "banish-ipt-sshd")
    with pytest.raises(BackendError, match="banish-ipt-sshd is missing"):
        run(backend.ban([ban("198.51.100.7"), ban("2001:db8::7")], NOW))
    assert IptablesProbe(ns).bans("sshd") == {}
    run(backend.unban([key("2001:db8::7")]))


@needs_tools
def test_iptables_second_family_failing_undoes_the_first(ns: Namespace, tmp_path: Path) -> None:
    """ip6tables-restore fails (a wrapper, switched by a file) after iptables-restore worked."""
    fail = tmp_path / "fail"
    for tool, body in (
        ("ip6tables-save", 'exec ip6tables-save "$@"'),
        ("ip6tables-restore", f'[ -e {fail} ] && exit 1; exec ip6tables-restore "$@"'),
    ):
        (tmp_path / tool).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / tool).chmod(0o755)
    backend = IptablesBackend(netns=ns.name, ip6tables=str(tmp_path / "ip6tables"))
    probe = IptablesProbe(ns)
    run(backend.start([SSHD]))
    fail.touch()
    with pytest.raises(BackendError, match="ip6tables-restore"):
        run(backend.ban([ban("198.51.100.7"), ban("2001:db8::7")], NOW))
    assert probe.bans("sshd") == {}  # the IPv4 rule was added, then taken back
    fail.unlink()
    run(backend.ban([ban("198.51.100.7"), ban("2001:db8::7")], NOW))
    fail.touch()
    with pytest.raises(BackendError, match="ip6tables-restore"):
        run(backend.unban([key("198.51.100.7"), key("2001:db8::7")]))
    assert set(probe.bans("sshd")) == {ip_network("198.51.100.7/32"), ip_network("2001:db8::7/128")}


# --- ipset's limits and reshaping -----------------------------------------------------------------


@needs_tools
def test_ipset_long_bans_are_permanent_and_slash_zero_is_two_halves(ns: Namespace) -> None:
    backend = IpsetBackend(netns=ns.name)
    probe = IpsetProbe(ns)
    run(backend.start([SSHD]))
    run(
        backend.ban(
            [
                ban("198.51.100.7", left=3_000_000),  # beyond ipset's 2,147,483 s
                ban("0.0.0.0/0", left=100),
                ban("::/0", left=100),
            ], NOW
        )
    )
    bans = probe.bans("sshd")
    assert bans[ip_network("198.51.100.7/32")] is None  # the daemon lifts it when it ends
    halves = {"0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"}
    assert {ip_network(h) for h in halves} <= set(bans)
    # reconcile sees the same representation: nothing to rewrite, nothing extra
    run(
        backend.reconcile(
            [ban("198.51.100.7", left=3_000_000), ban("0.0.0.0/0", left=100)], NOW
        )
    )
    assert set(probe.bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("0.0.0.0/1"),
        ip_network("128.0.0.0/1"),
    }
    run(backend.unban([key("0.0.0.0/0")]))
    assert set(probe.bans("sshd")) == {ip_network("198.51.100.7/32")}


@needs_tools
def test_ipset_sets_of_other_options_are_swapped_keeping_bans(ns: Namespace) -> None:
    old = IpsetBackend(netns=ns.name, maxelem=1000)
    run(old.start([SSHD]))
    run(old.ban([ban("198.51.100.7", left=900), ban("203.0.113.0/24", left=None)], NOW))
    run(IpsetBackend(netns=ns.name).start([SSHD]))
    members = ipset_members(ns)
    assert "maxelem 1000 " not in ns.run("ipset", "save")
    assert close_to(members["banish-sshd-h4"]["198.51.100.7"], 900)
    assert members["banish-sshd-n4"]["203.0.113.0/24"] == 0
    assert not any(name.startswith("banish-~") for name in members)  # no temporary set left
    # a set of another type under banish's name is not guessed at
    iptables(ns, 6, "-F", "banish-set-sshd")
    ns.run("ipset", "destroy", "banish-sshd-h6")
    ns.run("ipset", "create", "banish-sshd-h6", "hash:net", "family", "inet6")
    with pytest.raises(BackendError, match="exists as hash:net"):
        run(IpsetBackend(netns=ns.name).start([SSHD]))


@needs_tools
def test_iptables_reconcile_rebuilds_a_hand_edited_chain_and_drops_duplicates(
    ns: Namespace,
) -> None:
    backend = IptablesBackend(netns=ns.name)
    run(backend.start([SSHD]))
    active = [ban("198.51.100.7"), ban("203.0.113.0/24")]
    run(backend.ban(active, NOW))
    iptables(ns, 4, "-A", "banish-ipt-sshd", "-s", "198.51.100.7", "-j", "REJECT")  # twice
    run(backend.reconcile(active, NOW))
    _, v4 = save(ns, 4)
    assert len(v4["banish-ipt-sshd"]) == 3  # allow, 198.51.100.7 once, the /24
    iptables(ns, 4, "-I", "banish-ipt-sshd", "1", "-j", "ACCEPT")  # would let everyone in
    run(backend.reconcile(active, NOW))
    _, v4 = save(ns, 4)
    assert v4["banish-ipt-sshd"] == [
        "-s 192.0.2.128/25 -j RETURN",
        "-s 198.51.100.7/32 -j REJECT --reject-with icmp-port-unreachable",
        "-s 203.0.113.0/24 -j REJECT --reject-with icmp-port-unreachable",
    ]


@needs_tools
def test_iptables_many_deletions_rewrite_the_chain_instead(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iptables_backend, "REBUILD_AFTER", 2)
    backend = IptablesBackend(netns=ns.name)
    run(backend.start([SSHD]))
    run(backend.ban([ban(f"198.51.100.{i}") for i in range(6)], NOW))
    run(backend.unban([key(f"198.51.100.{i}") for i in range(3)]))  # 3 > 2: rewritten
    keep = [
        f"-s 198.51.100.{i}/32 -j REJECT --reject-with icmp-port-unreachable" for i in (3, 4, 5)
    ]
    assert save(ns, 4)[1]["banish-ipt-sshd"] == ["-s 192.0.2.128/25 -j RETURN", *keep]
    run(backend.reconcile([ban("198.51.100.9")], NOW))  # 3 extras: rewritten too
    assert save(ns, 4)[1]["banish-ipt-sshd"] == [
        "-s 192.0.2.128/25 -j RETURN",
        "-s 198.51.100.9/32 -j REJECT --reject-with icmp-port-unreachable",
    ]


@needs_tools
def test_backends_live_side_by_side(ns: Namespace) -> None:
    """One daemon may use ipset for one jail, iptables for another and nftables for a third."""
    kinds = ("ipset", "iptables", "nftables")
    backends = {k: create(k, BackendOptions(netns=ns.name)) for k in kinds}
    probes: dict[str, Probe] = {
        "ipset": IpsetProbe(ns), "iptables": IptablesProbe(ns), "nftables": NftProbe(ns)}
    for backend in backends.values():
        run(backend.start([SSHD]))
        run(backend.ban([ban("198.51.100.7")], NOW))
    run(backends["ipset"].stop())
    assert probes["ipset"].stopped()
    for kind in ("iptables", "nftables"):
        assert probes[kind].started([SSHD]) and probes[kind].bans("sshd"), kind
    run(backends["iptables"].reconcile([ban("198.51.100.7")], NOW))
    run(backends["iptables"].stop())
    assert probes["iptables"].stopped() and probes["nftables"].bans("sshd")
    run(backends["nftables"].stop())


@needs_tools
@pytest.mark.parametrize("kind", ["ipset", "iptables"])
def test_legacy_iptables_tools(kind: str, ns: Namespace) -> None:
    if shutil.which("iptables-legacy") is None:
        pytest.skip("iptables-legacy is not installed")
    legacy = ("iptables-legacy", "ip6tables-legacy")
    backend: IpsetBackend | IptablesBackend = (
        IpsetBackend(netns=ns.name, iptables=legacy[0], ip6tables=legacy[1]) if kind == "ipset"
        else IptablesBackend(netns=ns.name, iptables=legacy[0], ip6tables=legacy[1]))
    run(backend.start([SSHD]))
    run(backend.ban([ban("198.51.100.7"), ban("2001:db8::/64")], NOW))
    run(backend.reconcile([ban("198.51.100.7"), ban("2001:db8::/64")], NOW))
    v4, v6 = ns.run("iptables-legacy-save"), ns.run("ip6tables-legacy-save")
    allow = ("-m set --match-set banish-sshd-a4 src" if kind == "ipset"
             else "-s 192.0.2.128/25")
    chain = f"banish-{'set' if kind == 'ipset' else 'ipt'}-sshd"
    assert "-A INPUT -j banish-" in v4 and f"-A {chain} {allow} -j RETURN" in v4
    if kind == "iptables":
        assert "-s 198.51.100.7/32 -j REJECT" in v4 and "-s 2001:db8::/64 -j REJECT" in v6
    assert "banish" not in ns.run("iptables-save")  # the nf_tables variant saw nothing
    run(backend.stop())
    assert "banish" not in ns.run("iptables-legacy-save") + ns.run("ip6tables-legacy-save")


# --- forwarded traffic ----------------------------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("kind", ["ipset", "iptables"])
def test_packets_forwarded_through_docker_user(kind: str, ns: Namespace) -> None:
    """client -> router (DNAT 8080 -> server:80, as Docker publishes) -> server, with Docker's
    DOCKER-USER chain present: banish hooks there, and matches the published port 8080."""
    router = ns
    with routed(router) as (client, server):
        router.run("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8080",
                   "-j", "DNAT", "--to-destination", "10.211.0.2:80")  # fmt: skip
        iptables(router, 4, "-N", "DOCKER-USER")
        iptables(router, 4, "-A", "DOCKER-USER", "-j", "RETURN")
        iptables(router, 4, "-A", "FORWARD", "-j", "DOCKER-USER")
        backend = create(kind, BackendOptions(netns=router.name, forward=True))
        probes = [("10.210.0.2", "10.210.0.1", 8080), ("10.210.0.3", "10.210.0.1", 8080)]
        with tcp_server(server, [80]):
            run(backend.start([JailFirewall("app", ports=(8080,))]))
            _, v4 = save(router, 4)
            hook = f"-j banish-{'set' if kind == 'ipset' else 'ipt'}.fwd"
            assert v4["DOCKER-USER"] == [hook, "-j RETURN"] and v4["FORWARD"] == ["-j DOCKER-USER"]
            assert connect(client, probes, timeout=5) == ["ok", "ok"]
            run(backend.ban([ban("10.210.0.2", "app")], NOW))
            assert connect(client, probes) == ["refused", "ok"]
            run(backend.stop())
            assert connect(client, probes) == ["ok", "ok"]
        _, v4 = save(router, 4)
        assert v4["DOCKER-USER"] == ["-j RETURN"]


# --- the probes and the registry ------------------------------------------------------------------


@needs_tools
def test_probes_read_what_they_should(ns: Namespace) -> None:
    """The probes are the tests' eyes: check them against the tools' own words once."""
    ns.run("ipset", "create", "banish-j-h4", "hash:ip", "timeout", "0")
    ns.run("ipset", "add", "banish-j-h4", "192.0.2.1", "timeout", "100")
    ns.run("ipset", "add", "banish-j-h4", "192.0.2.2")
    ns.run("ipset", "create", "banish-j-n6", "hash:net", "family", "inet6", "timeout", "0")
    ns.run("ipset", "add", "banish-j-n6", "2001:db8::/64", "timeout", "50")
    bans = IpsetProbe(ns).bans("j")
    assert set(bans) == {
        ip_network("192.0.2.1/32"),
        ip_network("192.0.2.2/32"),
        ip_network("2001:db8::/64"),
    }
    assert close_to(bans[ip_network("192.0.2.1/32")], 100)
    assert bans[ip_network("192.0.2.2/32")] is None
    assert close_to(bans[ip_network("2001:db8::/64")], 50)
    iptables(ns, 6, "-N", "banish-ipt-j")
    iptables(ns, 6, "-A", "banish-ipt-j", "-s", "2001:db8::/64", "-j", "RETURN")
    iptables(ns, 6, "-A", "banish-ipt-j", "-s", "2001:db8::7", "-j", "REJECT")
    iptables(ns, 6, "-A", "banish-ipt-j", "-s", "2001:db8::8", "-j", "DROP")
    assert IptablesProbe(ns).bans("j") == {
        ip_network("2001:db8::7/128"): None,
        ip_network("2001:db8::8/128"): None,
    }


@needs_tools
def test_registry_knows_ipset_and_iptables_and_auto_falls_back_to_ipset(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"ipset", "iptables", "nftables"} <= set(names())
    options = BackendOptions(netns=ns.name)
    assert registry.resolve("auto", options) == "nftables"
    assert isinstance(create("ipset", options), IpsetBackend)
    assert isinstance(create("iptables", options), IptablesBackend)
    monkeypatch.setitem(registry._PROBES, "nftables", lambda o: "nft: no nf_tables here")
    assert registry.resolve("auto", options) == "ipset"
    assert registry.probe_ipset(BackendOptions(netns=ns.name + "-missing")) is not None


def test_missing_or_hanging_tools_are_backend_errors(tmp_path: Path) -> None:
    hang = tmp_path / "ipset"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    with pytest.raises(BackendError, match=r"ipset save timed out after 0\.3 s and was killed"):
        run(IpsetBackend(ipset=str(hang), timeout=0.3).start([SSHD]))
    with pytest.raises(BackendError, match="cannot run"):
        run(IptablesBackend(iptables=str(tmp_path / "missing")).start([SSHD]))
