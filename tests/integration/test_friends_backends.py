"""Friends-only services and allow lists that change at run time, against every native backend
on a real kernel, each inside throw-away network namespaces.

Parametrized over `probes.PROBES`, like the contract tests. What matters is who can connect:
a friend reaches a friends-only port, a stranger's packets to it are dropped (IPv4 and IPv6),
other ports are untouched. When the daemon swaps a friend's addresses (a host name resolving
anew), the backends reshape while clients connect in a tight loop from the address that stays
allowed at each moment: not one connection may fail, and no ban may be lost. The cross-version
ordering of the rule-per-address backend is checked commit by commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from ipaddress import ip_network
from itertools import product
from typing import IO, Any

import pytest

from banish.actions import BackendOptions, JailFirewall, Network, create, tools
from banish.actions.base import Backend, FriendsOnly, Shape
from banish.actions.iptables import IptablesBackend, phases
from banish.actions.xtables import Family
from banish.process import ProcessResult, run_process
from tests.integration.netns import (
    Namespace,
    connect,
    link,
    namespace,
    skip_reason,
    tcp_server,
)
from tests.integration.probes import (
    NOW,
    PROBES,
    IptablesProbe,
    ban,
    namespace_or_skip,
    need_tools,
    run,
)

needs_namespaces = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

V4, V6 = "10.200.0.1", "fd00:200::1"
A4, B4, A6, B6 = "10.200.5.1", "10.200.5.2", "fd00:200:0:5::1", "fd00:200:0:5::2"
"""The friend's addresses: A before a move, B after it, in both IP versions."""
NEAR4 = "10.200.5.9"
"""No friend, inside the network a jail bans."""
STRANGER4, STRANGER6, NETFRIEND4 = "10.200.6.6", "fd00:200:0:6::6", "10.200.7.9"
FRIENDLY, JAILED, OTHER = 2222, 2223, 2224
"""Ports: friends-only (and a jail's), a jail's only, nobody's."""


def nets(*addresses: str) -> tuple[Network, ...]:
    return tuple(ip_network(a) for a in addresses)


@pytest.fixture
def ns() -> Iterator[Namespace]:
    yield from namespace_or_skip()


@pytest.fixture
def pair() -> Iterator[tuple[Namespace, Namespace]]:
    """(server, client): the client holds the friend's, strangers' and neighbours' addresses."""
    with namespace() as server, namespace() as client:
        link(server, client, [f"{V4}/16", f"{V6}/48"],
             [f"{a}/16" for a in (A4, B4, NEAR4, STRANGER4, NETFRIEND4)]
             + [f"{a}/48" for a in (A6, B6, STRANGER6)])
        yield server, client


# --- pure: the order of commits of the rule-per-address backend -------------------------------


def _shape(*friends: str) -> Shape:
    listed = nets(*friends)
    return Shape.of([JailFirewall("ssh", ports=(22,), allow=listed)],
                    [FriendsOnly("ssh", ports=(22,), friends=listed)])


def test_phases_put_gains_before_losses_across_ip_versions() -> None:
    assert phases(None, _shape(A4)) == [(_shape(A4), (4, 6))]
    assert phases(_shape(A4), _shape(B4)) == [(_shape(B4), (4, 6))]  # one atomic commit
    assert phases(_shape(A4), _shape(B6)) == [(_shape(B6), (6, 4))]  # IPv6 gains first
    assert phases(_shape(A6), _shape(B4)) == [(_shape(B4), (4, 6))]
    # each version gains and loses: the union first, then the new lists
    union, final = phases(_shape(A4, A6), _shape(B4, B6))
    assert union == (_shape(A4, A6, B4, B6), (4, 6)) and final == (_shape(B4, B6), (4, 6))
    # a service that is new (or gone) takes no address from a friend: one pass
    base = _shape(A4, A6)
    more = Shape(base.jails, {**base.services, "web": FriendsOnly("web", (80,), "tcp", nets(B6))})
    assert phases(base, more) == [(more, (4, 6))]
    assert phases(more, base) == [(base, (4, 6))]


# --- packets -------------------------------------------------------------------------------------


@needs_namespaces
@pytest.mark.parametrize("kind", sorted(PROBES))
def test_friends_only_port_admits_friends_and_drops_strangers(
    kind: str, pair: tuple[Namespace, Namespace]
) -> None:
    need_tools(kind)
    server, client = pair
    backend = create(kind, BackendOptions(netns=server.name))
    probe = PROBES[kind](server)
    both = FriendsOnly("ssh", ports=(FRIENDLY,), friends=nets(A4, A6, "10.200.7.0/24"))
    v4_only = FriendsOnly("v4only", ports=(JAILED,), friends=nets(A4))
    probes = [
        (A4, V4, FRIENDLY),  # 0 friend
        (A6, V6, FRIENDLY),  # 1 friend, IPv6
        (NETFRIEND4, V4, FRIENDLY),  # 2 inside a friendly network
        (STRANGER4, V4, FRIENDLY),  # 3 stranger: dropped
        (STRANGER6, V6, FRIENDLY),  # 4 stranger, IPv6: dropped
        (STRANGER4, V4, OTHER),  # 5 stranger, another port: untouched
        (STRANGER6, V6, OTHER),  # 6 the same in IPv6
        (A4, V4, JAILED),  # 7 friend of the IPv4-only service
        (A6, V6, JAILED),  # 8 the same friend's IPv6 address is nobody's friend there
        (STRANGER4, V4, JAILED),  # 9 stranger
    ]
    with tcp_server(server, [FRIENDLY, JAILED, OTHER]):
        # first contact waits out neighbour discovery
        assert connect(client, probes, timeout=5) == ["ok"] * len(probes)
        run(backend.start([], [both, v4_only]))  # friends-only services need no jail
        assert probe.friends("ssh") == set(nets(A4, A6, "10.200.7.0/24"))
        assert probe.friends("v4only") == set(nets(A4))
        got = connect(client, probes, timeout=2.0)
        assert got == ["ok", "ok", "ok", "timeout", "timeout", "ok", "ok", "ok", "timeout",
                       "timeout"]
        run(backend.stop())
        assert probe.stopped()
        assert connect(client, probes) == ["ok"] * len(probes)


@needs_namespaces
@pytest.mark.parametrize("kind", sorted(PROBES))
def test_a_friend_inside_a_banned_network_passes_both_and_strangers_are_dropped_first(
    kind: str, pair: tuple[Namespace, Namespace]
) -> None:
    """The friends-only drop comes before any jail: a stranger inside a banned network is
    dropped on the friends-only port (not rejected by the jail), rejected by the jail on its
    other port; the friend, in the jail's allow list, passes both."""
    need_tools(kind)
    server, client = pair
    backend = create(kind, BackendOptions(netns=server.name))
    jail = JailFirewall("ssh", ports=(FRIENDLY, JAILED), allow=nets(A4))
    service = FriendsOnly("ssh", ports=(FRIENDLY,), friends=nets(A4))
    probes = [(A4, V4, FRIENDLY), (A4, V4, JAILED), (NEAR4, V4, FRIENDLY), (NEAR4, V4, JAILED),
              (STRANGER4, V4, JAILED)]
    with tcp_server(server, [FRIENDLY, JAILED]):
        assert connect(client, probes, timeout=5) == ["ok"] * len(probes)
        run(backend.start([jail], [service]))
        run(backend.ban([ban("10.200.5.0/24", "ssh")], NOW))
        assert connect(client, probes, timeout=2.0) == ["ok", "ok", "timeout", "refused", "ok"]


# --- swapping lists under load ------------------------------------------------------------------

_PROBER = r"""
import json, select, socket, sys, time
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in dst else socket.AF_INET
IP_BIND_ADDRESS_NO_PORT = 24  # the port is chosen at connect: no run on bound ports

def probe():
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.settimeout(0.9)  # below the first SYN retransmission (1 s): a dropped SYN fails
        try:
            s.bind((src, 0))
            s.connect((dst, port))
            s.settimeout(10)
            return "ok" if s.recv(2) == b"ok" else "bad reply"
        except ConnectionRefusedError:
            return "refused"
        except (socket.timeout, TimeoutError):
            return "timeout"
        except OSError as exc:
            return "error: %s" % exc

running, first, count, failures = False, False, 0, []
while True:
    if select.select([sys.stdin], [], [], 0 if running else None)[0]:
        command = sys.stdin.readline().strip()
        if command == "go":
            running, first = True, True
        elif command == "stop":
            running = False
            print(json.dumps({"count": count, "failures": failures}), flush=True)
            count, failures = 0, []
        else:
            break
        continue
    result = probe()
    count += 1
    if result != "ok":
        failures.append([time.monotonic(), result])
    if first:
        print("on" if result == "ok" else "first probe: " + result, flush=True)
        first = False
"""


class Prober:
    """A client connecting from one address, over and over, between `go` and `stop`."""

    def __init__(self, ns: Namespace, src: str) -> None:
        dst = V6 if ":" in src else V4
        self.src = src
        self.proc = subprocess.Popen(
            ns.argv(sys.executable, "-c", _PROBER, src, dst, str(FRIENDLY)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _say(self, command: str) -> str:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(command + "\n")
        stdin.flush()
        return stdout.readline().strip()

    def go(self) -> None:
        """Start probing; returns once a first connection succeeded."""
        answer = self._say("go")
        assert answer == "on", f"{self.src} before the change: {answer}"

    def stop(self) -> tuple[int, list[tuple[float, str]]]:
        """(connections made, failures) since `go`."""
        report = json.loads(self._say("stop"))
        return report["count"], [tuple(f) for f in report["failures"]]

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate()  # reaps it and closes the pipes


def _jail_and_service(friends: tuple[str, ...]) -> tuple[JailFirewall, FriendsOnly]:
    """What the daemon hands a backend: every friend in the jail's allow list too."""
    listed = nets(*friends)
    return (JailFirewall("ssh", ports=(FRIENDLY, JAILED), allow=listed),
            FriendsOnly("ssh", ports=(FRIENDLY,), friends=listed))


CYCLES = 10
BANS = [ban("10.200.5.0/24", "ssh"), ban("fd00:200:0:5::/64", "ssh", left=None),
        ban(NEAR4, "ssh", left=3000)]
"""Bans that cover the friend's addresses too: only the jail's allow list lets the friend in."""


@needs_namespaces
@pytest.mark.parametrize("moves", ["same-version", "across-versions"])
@pytest.mark.parametrize("kind", sorted(PROBES))
def test_friend_lists_swap_without_a_gap_and_bans_survive(
    kind: str, moves: str, pair: tuple[Namespace, Namespace]
) -> None:
    """The friend's list goes [A] -> [A, B] -> [B] -> [A, B] -> [A] ..., each step a `start`
    and a `reconcile` as the daemon makes them, while a client connects in a tight loop from
    each address that is allowed both before and after the step. Not one connection fails."""
    need_tools(kind)
    server, client = pair
    a, b = (A4, B4) if moves == "same-version" else (A4, B6)
    backend = create(kind, BackendOptions(netns=server.name))
    probe = PROBES[kind](server)
    with tcp_server(server, [FRIENDLY, JAILED]):
        warm = [(a, V4, FRIENDLY), (b, V6 if ":" in b else V4, FRIENDLY), (NEAR4, V4, JAILED)]
        assert connect(client, warm, timeout=5) == ["ok"] * 3

        def apply(friends: tuple[str, ...]) -> None:
            jail, service = _jail_and_service(friends)
            run(backend.start([jail], [service]))
            run(backend.reconcile(BANS, NOW))

        apply((a,))
        run(backend.ban(BANS, NOW))
        banned = set(probe.bans("ssh"))
        assert banned == set(nets("10.200.5.0/24", "fd00:200:0:5::/64", NEAR4))
        probers = {addr: Prober(client, addr) for addr in (a, b)}
        try:
            state: tuple[str, ...] = (a,)
            made, failed = 0, []
            for _ in range(CYCLES):
                for step in ((a, b), (b,), (a, b), (a,)):
                    staying = [addr for addr in step if addr in state]
                    for addr in staying:
                        probers[addr].go()
                    apply(step)
                    for addr in staying:
                        count, failures = probers[addr].stop()
                        made += count
                        failed += [(addr, state, step, f) for f in failures]
                    state = step
                    assert probe.friends("ssh") == set(nets(*step))
                    assert probe.allowed("ssh") == set(nets(*step))
        finally:
            for prober in probers.values():
                prober.close()
        assert not failed, f"{len(failed)} of {made} connections failed: {failed[:5]}"
        assert made >= 4 * CYCLES
        assert set(probe.bans("ssh")) == banned
        # the friend is at A again; B is a stranger once more, the neighbour still banned
        results = connect(client, [(a, V4, FRIENDLY), (b, V6 if ":" in b else V4, FRIENDLY),
                                   (NEAR4, V4, JAILED)], timeout=2.0)
        assert results == ["ok", "timeout", "refused"]


@needs_namespaces
@pytest.mark.parametrize("kind", sorted(PROBES))
def test_the_same_lists_again_change_nothing(
    kind: str, ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `start` with the same jails, services and lists (in any order) runs no tool at all:
    the daemon reshapes whenever any name resolves anew, mostly to the same answer."""
    need_tools(kind)
    backend = create(kind, BackendOptions(netns=ns.name))
    jail, service = _jail_and_service((A4, A6, "10.200.7.0/24"))
    other = JailFirewall("web", ports=(80,))
    run(backend.start([jail, other], [service]))
    run(backend.ban(BANS, NOW))
    ran: list[Sequence[str]] = []
    real = run_process

    async def counted(argv: Sequence[str], **kwargs: Any) -> ProcessResult:
        ran.append(argv)
        return await real(argv, **kwargs)

    monkeypatch.setattr(tools, "run_process", counted)
    reordered = JailFirewall("ssh", ports=jail.ports, allow=tuple(reversed(jail.allow)))
    run(backend.start([other, reordered], [service]))
    assert ran == []
    run(backend.start([other, reordered], [FriendsOnly("ssh", (FRIENDLY,), "tcp", nets(A4))]))
    assert ran, "a changed list is applied"
    assert set(PROBES[kind](ns).bans("ssh")) == {ip_network(b.address) for b in BANS}


@needs_namespaces
@pytest.mark.parametrize("kind", sorted(PROBES))
def test_long_names_fit_and_reconcile_rebuilds_services_deleted_by_hand(
    kind: str, ns: Namespace
) -> None:
    need_tools(kind)
    backend = create(kind, BackendOptions(netns=ns.name))
    probe = PROBES[kind](ns)
    long = [FriendsOnly("f" * 64, ports=(22,), friends=nets(A4, "10.200.0.0/16", B6)),
            FriendsOnly("f" * 63 + "g", ports=((1000, 1010),), protocol="udp",
                        friends=nets("0.0.0.0/0"))]
    run(backend.start([JailFirewall("f" * 64)], long))
    assert probe.friends(long[0].name) == set(nets("10.200.0.0/16", B6))  # overlaps merged
    assert probe.friends(long[1].name) == set(nets("0.0.0.0/0")) or (
        kind == "ipset" and probe.friends(long[1].name) == set(nets("0.0.0.0/1", "128.0.0.0/1")))
    probe.drop_structure_by_hand()
    assert probe.friends(long[0].name) == set()
    run(backend.reconcile([], NOW))
    assert probe.friends(long[0].name) == set(nets("10.200.0.0/16", B6))
    run(backend.stop())
    assert probe.stopped()


# --- ipset: one restore, additions first ---------------------------------------------------------


@needs_namespaces
def test_ipset_a_list_change_is_one_restore_adding_before_deleting(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lists live in sets, so a moved friend costs one ``ipset restore`` and no rule change:
    every new member of every list (both IP versions) is added before any old one goes."""
    need_tools("ipset")
    backend = create("ipset", BackendOptions(netns=ns.name))
    _start(backend, (A4, A6))
    run(backend.ban(BANS, NOW))
    ran: list[tuple[list[str], bytes | None]] = []

    async def recorded(argv: Sequence[str], **kwargs: Any) -> ProcessResult:
        ran.append((list(argv), kwargs.get("stdin")))
        return await run_process(argv, **kwargs)

    monkeypatch.setattr(tools, "run_process", recorded)
    _start(backend, (B4, B6))
    changes = [stdin for argv, stdin in ran if stdin is not None]
    assert not any("iptables" in " ".join(argv) or "ip6tables" in " ".join(argv)
                   for argv, _ in ran), "only lists changed: no rule is rewritten"
    assert len(changes) == 1 and changes[0] is not None
    lines = changes[0].decode().splitlines()
    verbs = [line.split()[0] for line in lines]
    assert verbs == ["add"] * 4 + ["del"] * 4
    assert {(line.split()[1], ip_network(line.split()[2])) for line in lines} == {
        (f"banish-ssh-{kind}{v}", ip_network(addr))
        for kind in "af" for v, addr in ((4, B4), (6, B6), (4, A4), (6, A6))}
    probe = PROBES["ipset"](ns)
    assert probe.friends("ssh") == probe.allowed("ssh") == set(nets(B4, B6))
    assert set(probe.bans("ssh")) == {ip_network(b.address) for b in BANS}


# --- the rule-per-address backend, commit by commit ---------------------------------------------


@needs_namespaces
def test_iptables_friend_moving_across_ip_versions_is_never_locked_out(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """iptables and ip6tables commit apart. Whatever the move -- A4 to B6, or both versions
    at once -- after every single commit every old address or every new one is allowed, in
    the jail's chain and the service's chain alike; and the bans stay throughout."""
    need_tools("iptables")
    backend = IptablesBackend(netns=ns.name)
    probe = IptablesProbe(ns)
    seen: list[tuple[set[Network], set[Network], set[Network]]] = []
    real = Family.restore

    async def watched(self: Family, lines: Sequence[str]) -> None:
        await real(self, lines)
        seen.append((probe.allowed("ssh"), probe.friends("ssh"), set(probe.bans("ssh"))))

    monkeypatch.setattr(Family, "restore", watched)
    moves = [((A4,), (B6,)), ((B6,), (A4,)), ((A4, A6), (B4, B6)), ((B4, B6), (A4, A6))]
    for old, new in moves:
        _start(backend, old)
        run(backend.ban(BANS, NOW))
        seen.clear()
        _start(backend, new)
        assert seen, "a changed list commits something"
        for allowed, friends, banned in seen:
            for was, now in product(nets(*old), nets(*new)):  # the friend at any old address
                assert was in allowed or now in allowed, (old, new, allowed)
                assert was in friends or now in friends, (old, new, friends)
            assert banned == {ip_network(b.address) for b in BANS}
        assert seen[-1][:2] == (set(nets(*new)), set(nets(*new)))
    assert len(seen) == 4  # both versions changing both ways: the union first, then the lists


def _start(backend: Backend, friends: tuple[str, ...]) -> None:
    jail, service = _jail_and_service(friends)
    run(backend.start([jail], [service]))
