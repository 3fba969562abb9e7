"""The Backend contract, run against every native backend on a real kernel, each inside its
own throw-away network namespace.

Parametrized over `probes.PROBES`: a backend joins by adding a probe (how to read and disturb
its state by hand) and must then pass the same tests. Bans go in as ``banish.events.Ban`` with
an absolute end, unbans as ``BanKey``; every call passes ``probes.NOW``. Where a firewall keeps
no time left (iptables rules), the tests check that the ban is there and that the kernel claims
no timeout. Packet tests check what matters in the end: who can still connect. Friends-only
services and allow lists changing at run time have their own file, test_friends_backends.py,
parametrized the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_network

import pytest

from banish.actions import Backend, BackendOptions, JailFirewall, create
from banish.actions.base import FriendsOnly
from banish.events import Ban
from tests.integration.netns import (
    Namespace,
    connect,
    link,
    namespace,
    skip_reason,
    tcp_server,
    wait_until,
)
from tests.integration.probes import (
    NOW,
    PROBES,
    SSHD,
    WEB,
    Probe,
    ban,
    close_to,
    key,
    namespace_or_skip,
    need_tools,
    run,
)

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@dataclass
class Firewall:
    kind: str
    backend: Backend
    probe: Probe
    ns: Namespace

    def left_ok(self, left: float | None, want: float) -> bool:
        """The kernel's time left is ``want`` (within slack), or none where it keeps none."""
        return close_to(left, want) if self.probe.timeouts else left is None


@pytest.fixture
def ns() -> Iterator[Namespace]:
    yield from namespace_or_skip()


@pytest.fixture(params=sorted(PROBES))
def fw(request: pytest.FixtureRequest, ns: Namespace) -> Firewall:
    need_tools(request.param)
    backend = create(request.param, BackendOptions(netns=ns.name))
    return Firewall(request.param, backend, PROBES[request.param](ns), ns)


def test_start_creates_structure_and_stop_removes_only_its_own(fw: Firewall) -> None:
    fw.probe.add_foreign()
    friends = (ip_network("192.0.2.7/32"), ip_network("2001:db8::/64"))
    run(fw.backend.start([SSHD, WEB], [FriendsOnly("sshd", ports=(22,), friends=friends)]))
    assert fw.probe.started([SSHD, WEB])
    assert fw.probe.bans("sshd") == {}
    assert fw.probe.allowed("sshd") == {ip_network("192.0.2.128/25")}
    assert fw.probe.friends("sshd") == set(friends)  # a service may share a jail's name
    run(fw.backend.ban([ban("198.51.100.7")], NOW))
    run(fw.backend.stop())
    assert fw.probe.stopped()
    assert fw.probe.foreign_intact()
    run(fw.backend.stop())  # stopping twice is harmless
    assert fw.probe.foreign_intact()


def test_ban_ipv4_ipv6_and_networks_with_timeouts(fw: Firewall) -> None:
    run(fw.backend.start([SSHD, WEB]))
    given = [
        ban("198.51.100.7"),
        ban("2001:db8::7", left=300),
        ban("203.0.113.0/24", left=1200),
        ban("2001:db8:1:2::/64"),
        ban("198.51.100.9", left=None),
        ban("198.51.100.10", jail="web"),
    ]
    run(fw.backend.ban(given, NOW))
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
    assert fw.left_ok(bans[ip_network("198.51.100.7/32")], 600)
    assert fw.left_ok(bans[ip_network("2001:db8::7/128")], 300)
    assert fw.left_ok(bans[ip_network("203.0.113.0/24")], 1200)
    assert fw.left_ok(bans[ip_network("2001:db8:1:2::/64")], 600)
    assert bans[ip_network("198.51.100.9/32")] is None
    assert set(fw.probe.bans("web")) == {ip_network("198.51.100.10/32")}


def test_a_ban_ends_at_its_absolute_end_and_one_already_over_is_skipped(fw: Firewall) -> None:
    """``banned_at + bantime`` is the end wherever and whenever a ban is applied: a ban
    applied late gets only the time it has left, one whose end has passed is not applied,
    and ``now`` is the caller's clock, not the backend's."""
    run(fw.backend.start([SSHD]))
    late = Ban("198.51.100.7", "sshd", NOW - 500, 600)  # 100 s left at NOW
    over = Ban("198.51.100.8", "sshd", NOW - 700, 600)
    just_over = Ban("203.0.113.0/24", "sshd", NOW - 600, 600)
    far = Ban("2001:db8::7", "sshd", NOW + 10_000, 600)  # decided "in the future": 10,600 s
    run(fw.backend.ban([late, over, just_over, far], NOW))
    bans = fw.probe.bans("sshd")
    assert set(bans) == {ip_network("198.51.100.7/32"), ip_network("2001:db8::7/128")}
    assert fw.left_ok(bans[ip_network("198.51.100.7/32")], 100)
    assert fw.left_ok(bans[ip_network("2001:db8::7/128")], 10_600)
    # reconcile drops what is over, even if the firewall still holds it
    run(fw.backend.ban([ban("198.51.100.8", left=600)], NOW))
    run(fw.backend.reconcile([late, over], NOW))
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.7/32")}


def test_overlapping_bans_coexist_with_their_own_timeouts(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    run(fw.backend.ban([ban("10.20.0.0/16", left=100)], NOW))
    run(
        fw.backend.ban(
            [ban("10.20.30.0/24", left=200), ban("10.20.30.40", left=300)], NOW
        )
    )
    run(
        fw.backend.ban(
            [ban("2001:db8::/32", left=100), ban("2001:db8::/64", left=200)], NOW
        )
    )
    bans = fw.probe.bans("sshd")
    assert len(bans) == 5
    for net, want in (
        ("10.20.0.0/16", 100),
        ("10.20.30.0/24", 200),
        ("10.20.30.40/32", 300),
        ("2001:db8::/32", 100),
        ("2001:db8::/64", 200),
    ):
        assert ip_network(net) in bans and fw.left_ok(bans[ip_network(net)], want), net


def test_reban_refreshes_time_left_and_duplicates_keep_the_longest(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    run(
        fw.backend.ban(
            [ban("198.51.100.7", left=600), ban("203.0.113.0/24", left=60)], NOW
        )
    )
    run(
        fw.backend.ban(
            [ban("198.51.100.7", left=7200), ban("203.0.113.0/24", left=30)], NOW
        )
    )
    bans = fw.probe.bans("sshd")
    assert len(bans) == 2  # a re-ban adds nothing beside the first
    assert fw.left_ok(bans[ip_network("198.51.100.7/32")], 7200)
    assert fw.left_ok(bans[ip_network("203.0.113.0/24")], 30)
    run(
        fw.backend.ban(
            [ban("198.51.100.8", left=50), ban("198.51.100.8", left=500)], NOW
        )
    )
    assert fw.left_ok(fw.probe.bans("sshd")[ip_network("198.51.100.8/32")], 500)
    run(
        fw.backend.ban(
            [ban("198.51.100.8", left=None), ban("198.51.100.8", left=500)], NOW
        )
    )
    bans = fw.probe.bans("sshd")
    assert len(bans) == 3 and bans[ip_network("198.51.100.8/32")] is None


def test_kernel_expires_a_short_ban(fw: Firewall) -> None:
    if not fw.probe.timeouts:
        pytest.skip(f"{fw.kind} keeps no timeouts: the daemon lifts its bans")
    run(fw.backend.start([SSHD]))
    run(
        fw.backend.ban([ban("198.51.100.7", left=2), ban("198.51.100.8", left=600)], NOW)
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
                ban("198.51.100.7"),
                ban("2001:db8::7"),
                ban("203.0.113.0/24"),
                ban("198.51.100.8"),
                ban("198.51.100.7", jail="web"),
            ], NOW
        )
    )
    run(
        fw.backend.unban(
            [
                key("198.51.100.7"),
                key("2001:db8::7"),
                key("203.0.113.0/24"),
                key("198.51.100.99"),  # never banned
                key("10.0.0.0/8"),  # a prefix length never used
                key("2001:db8:5::/64"),
            ]
        )
    )
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.8/32")}
    assert set(fw.probe.bans("web")) == {ip_network("198.51.100.7/32")}
    run(fw.backend.unban([key("198.51.100.7")]))  # twice is fine too
    assert set(fw.probe.bans("web")) == {ip_network("198.51.100.7/32")}


def test_reconcile_restores_removes_and_corrects(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    active = [
        ban("198.51.100.7"),
        ban("2001:db8::7"),
        ban("203.0.113.0/24"),
        ban("198.51.100.9", left=None),
    ]
    run(fw.backend.ban([*active, ban("198.51.100.8", left=5000)], NOW))
    fw.probe.flush_by_hand("sshd")
    fw.probe.add_by_hand("sshd", "192.0.2.66")  # an extra, permanent
    assert set(fw.probe.bans("sshd")) == {ip_network("192.0.2.66/32")}
    corrected = ban("198.51.100.8", left=50)
    run(fw.backend.reconcile([*active, corrected], NOW))
    bans = fw.probe.bans("sshd")
    assert set(bans) == {ip_network(b.address) for b in [*active, corrected]}
    assert fw.left_ok(bans[ip_network("198.51.100.8/32")], 50)
    assert bans[ip_network("198.51.100.9/32")] is None
    # time left that drifted (or a permanent ban that became timed) is rewritten in place
    run(
        fw.backend.reconcile(
            [
                ban("198.51.100.7", left=3000),
                ban("198.51.100.9", left=100),
                ban("203.0.113.0/24"),
            ], NOW
        )
    )
    bans = fw.probe.bans("sshd")
    assert len(bans) == 3
    assert fw.left_ok(bans[ip_network("198.51.100.7/32")], 3000)
    assert fw.left_ok(bans[ip_network("198.51.100.9/32")], 100)
    run(fw.backend.reconcile([ban("198.51.100.7")], NOW))  # a prefix set no longer needed goes
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.7/32")}


def test_reconcile_rebuilds_structure_deleted_by_hand(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    run(fw.backend.ban([ban("198.51.100.7"), ban("203.0.113.0/24")], NOW))
    fw.probe.drop_structure_by_hand()
    assert not fw.probe.started([SSHD])
    run(fw.backend.reconcile([ban("198.51.100.7"), ban("203.0.113.0/24")], NOW))
    assert fw.probe.started([SSHD])
    assert set(fw.probe.bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("203.0.113.0/24"),
    }


def test_restart_reload_keeps_bans_of_remaining_jails(fw: Firewall) -> None:
    run(fw.backend.start([SSHD, WEB]))
    run(
        fw.backend.ban(
            [ban("198.51.100.7"), ban("203.0.113.0/24"), ban("198.51.100.8", jail="web")], NOW
        )
    )
    again = create(fw.kind, BackendOptions(netns=fw.ns.name))
    run(again.start([SSHD]))  # a daemon restarted with the web jail removed
    assert set(fw.probe.bans("sshd")) == {
        ip_network("198.51.100.7/32"),
        ip_network("203.0.113.0/24"),
    }
    assert fw.probe.bans("web") == {}
    run(again.unban([key("203.0.113.0/24")]))  # knows the /24 set it did not create
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.7/32")}
    # reshaped on reload (verdict, allow list, ports): the bans stay
    reshaped = JailFirewall("sshd", ports=(22,), blocktype="drop", allow=())
    run(again.start([reshaped]))
    assert set(fw.probe.bans("sshd")) == {ip_network("198.51.100.7/32")}
    assert fw.probe.started([reshaped])


def test_long_jail_names_fit_the_kernel(fw: Firewall) -> None:
    long = [JailFirewall("j" * 64), JailFirewall("j" * 63 + "k", protocol="all")]
    run(fw.backend.start(long))
    run(fw.backend.ban([ban("198.51.100.7", j.name) for j in long], NOW))
    assert fw.probe.started(long)
    for jail in long:
        assert set(fw.probe.bans(jail.name)) == {ip_network("198.51.100.7/32")}
    run(fw.backend.unban([key("198.51.100.7", long[0].name)]))
    assert fw.probe.bans(long[0].name) == {}
    assert set(fw.probe.bans(long[1].name)) == {ip_network("198.51.100.7/32")}
    run(fw.backend.stop())
    assert fw.probe.stopped()


def test_calls_for_jails_not_started_are_refused(fw: Firewall) -> None:
    run(fw.backend.start([SSHD]))
    with pytest.raises(ValueError, match="nope"):
        run(fw.backend.ban([ban("198.51.100.7", jail="nope")], NOW))
    with pytest.raises(ValueError, match="share a name"):
        run(fw.backend.start([SSHD, SSHD]))


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
    need_tools(kind)
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
                    ban("10.200.1.2", "ssh"),
                    ban("10.200.2.0/24", "ssh"),
                    ban("10.200.3.0/24", "ssh"),
                    ban("10.200.3.9", "ssh"),
                    ban("fd00:200:0:1::2", "ssh"),
                    ban("fd00:200:0:2::/64", "ssh"),
                    ban("10.200.1.3", "web"),
                ], NOW
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
