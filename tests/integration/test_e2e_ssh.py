"""End to end with real parts: OpenSSH, an SSH client, the banish daemon and the kernel firewall.

Three network namespaces ("server", "attacker", "friend"; see e2e_net.py) and Debian's sshd in
"server", logging to a file the real ``banish run`` follows with its packaged sshd filter; the
daemon's firewall commands run in "server" (``BANISH_NETNS``). The attacker fails password logins
with paramiko until ``maxretry``; then the kernel, not banish, must refuse the attacker's new
connections while the friend still logs in, and let the attacker back after ``bantime``. Then
the kernel's sets must survive ``kill -9`` of banish, equal the store after a restart, and be
put back by reconciliation after someone flushes them by hand.

sshd's ``-E`` log has neither dates nor ``sshd[pid]:`` prefixes, so the jail reads it with the
filter's ``logtype=short`` (optional prefix) and ``datepattern = {NONE}`` (a line happens when
it is read). Every wait is a bounded poll for a log line or a kernel state.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon
from tests.integration.e2e_net import (
    PASSWORD,
    USER,
    VIEWS,
    WRONG,
    Lab,
    Sshd,
    lab,
    login_job,
    skip_reason,
    ssh,
    ssh_parallel,
    tcp_job,
    wait_for,
)

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

BACKENDS = ["nftables", "ipset"]  # the ipset backend joins with one word here
FAMILIES = [4, 6]
MAXRETRY = 3
BANTIME = 8  # seconds: long enough for the probes below, short enough to wait out
RECONCILE = 2  # banish.conf reconcileinterval, seconds
# A rejected SYN is "refused"; it is a "timeout" when the kernel's ICMP rate limit swallowed
# the reject (the attacker's earlier connections are being rejected too).
SHUT = {"refused", "timeout"}
FILTERS = Path(__file__).resolve().parents[2] / "src" / "banish" / "filters" / "filter.d"

JAILS = """
[sshd]
enabled = true
filter = sshd[logtype=short]
datepattern = {{NONE}}
logpath = {{logs}}/sshd.log
banaction = {backend}
action = %(banaction)s
port = ssh
maxretry = {maxretry}
findtime = 10m
bantime = {bantime}
"""


class World:
    """The lab, sshd and the daemon of one test (everything torn down by the fixture)."""

    def __init__(self, lab: Lab, sshd: Sshd, daemon: Daemon, backend: str) -> None:
        self.lab, self.sshd, self.daemon, self.backend = lab, sshd, daemon, backend
        self.view = VIEWS[backend]

    def kernel(self) -> dict[str, float | None]:
        return self.view.bans(self.lab.server, "sshd")

    def store(self) -> dict[str, float | None]:
        """Active bans in banish's store: {address: seconds left (None: permanent)}."""
        now = time.time()
        with closing(sqlite3.connect(self.daemon.db)) as con:
            rows = con.execute("SELECT address, expires_at FROM active_bans WHERE jail = 'sshd' "
                               "AND (expires_at IS NULL OR expires_at > ?)", (now,)).fetchall()
        return {a: None if e is None else e - now for a, e in rows}

    def kernel_equals_store(self) -> bool:
        kernel, store = self.kernel(), self.store()
        if set(kernel) != set(store):
            return False
        for address, left in store.items():
            kernel_left = kernel[address]
            if left is None or kernel_left is None:
                if left != kernel_left:
                    return False
            # nft shows whole seconds; the backend rewrites what drifts by more than 5 s.
            elif abs(left - kernel_left) > 6:
                return False
        return True

    def diagnostics(self) -> str:
        return (f"kernel={self.kernel()} store={self.store()}\n--- banish log\n"
                f"{self.daemon.log_text()[-3000:]}\n--- sshd\n{self.sshd.diagnostics()}")


def _world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str,
           bantime: int) -> Iterator[World]:
    if shutil.which(VIEWS[backend].tool) is None:
        pytest.skip(f"'{VIEWS[backend].tool}' is not installed")
    filters = {name: (FILTERS / f"{name}.conf").read_text() for name in ("sshd", "common")}
    with ExitStack() as stack:
        net = stack.enter_context(lab())
        daemon = Daemon(tmp_path / "banish", JAILS.format(backend=backend, maxretry=MAXRETRY,
                                                          bantime=bantime), filters=filters)
        with open(daemon.cfg / "banish.conf", "a") as fh:
            fh.write(f"reconcileinterval = {RECONCILE}\n")
        sshd = Sshd(net.server, tmp_path / "sshd", daemon.logs / "sshd.log")
        stack.callback(sshd.stop)
        monkeypatch.setenv("BANISH_NETNS", net.server.name)
        stack.enter_context(daemon)
        daemon.start()
        yield World(net, sshd, daemon, backend)
        daemon.stop()


@pytest.fixture(params=BACKENDS)
def short_bans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               request: pytest.FixtureRequest) -> Iterator[World]:
    yield from _world(tmp_path, monkeypatch, request.param, BANTIME)


@pytest.fixture(params=BACKENDS)
def long_bans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> Iterator[World]:
    yield from _world(tmp_path, monkeypatch, request.param, 3600)


@pytest.mark.parametrize("family", FAMILIES, ids=["ipv4", "ipv6"])
def test_attacker_is_shut_out_friend_is_not_and_the_ban_ends(short_bans: World,
                                                             family: int) -> None:
    w, net = short_bans, short_bans.lab
    server, attacker = net.addr("server-attacker", family), net.addr("attacker", family)
    friend_server, friend = net.addr("server-friend", family), net.addr("friend", family)

    outcomes = ssh(net.attacker, [tcp_job(server)] + [login_job(server, WRONG)] * MAXRETRY)
    assert outcomes == ["banner"] + ["denied"] * MAXRETRY, w.diagnostics()
    assert w.sshd.log_text().count(f"Failed password for {USER} from {attacker} ") == MAXRETRY
    wait_for(lambda: attacker in w.daemon.bans(), 10, f"banish to ban {attacker}")
    assert attacker in w.kernel(), w.diagnostics()

    # A new connection of the attacker dies in the kernel (even with the right password);
    # the friend, at the same moment, logs in and runs a command.
    blocked, welcomed = ssh_parallel(
        (net.attacker, [tcp_job(server), login_job(server, PASSWORD, timeout=2)]),
        (net.friend, [login_job(friend_server, PASSWORD)]))
    assert set(blocked) <= SHUT, (blocked, w.diagnostics())
    assert welcomed == [f"login:{USER}"], (welcomed, w.diagnostics())
    assert attacker not in w.daemon.bans("Unban"), "bantime too short for the probes above"
    assert friend not in w.daemon.bans()

    wait_for(lambda: attacker in w.daemon.bans("Unban"), BANTIME + 5, f"unban of {attacker}")
    assert attacker not in w.kernel(), w.diagnostics()
    assert ssh(net.attacker, [tcp_job(server)]) == ["banner"], w.diagnostics()
    assert w.daemon.bans() == [attacker]


def test_kernel_sets_survive_kill9_match_the_store_and_are_reconciled(long_bans: World) -> None:
    w, net, view = long_bans, long_bans.lab, long_bans.view
    servers = [net.addr("server-attacker", f) for f in FAMILIES]
    attackers = [net.addr("attacker", f) for f in FAMILIES]
    v4_server, v6_attacker = servers[0], attackers[1]

    # IPv6 first: sshd's -E lines carry no per-connection prefix, so every line shares one
    # multi-line id, and (as in fail2ban) an ip4 remembered for that id wins over a later
    # line's ip6; the other way round each line's own address is used.
    jobs = [login_job(s, WRONG) for s in reversed(servers) for _ in range(MAXRETRY)]
    assert ssh(net.attacker, jobs) == ["denied"] * len(jobs), w.diagnostics()
    wait_for(lambda: set(attackers) <= set(w.daemon.bans()), 10, "both bans")
    assert set(w.kernel()) == set(attackers), w.diagnostics()

    # banish dies: the kernel keeps enforcing. Meanwhile someone edits the sets by hand.
    w.daemon.kill9()
    probes = ssh(net.attacker, [tcp_job(s) for s in servers])
    assert set(probes) <= SHUT, (probes, w.diagnostics())
    stranger = "192.0.2.77"
    view.add(net.server, "sshd", stranger, 3600)
    view.delete(net.server, "sshd", v6_attacker)
    assert set(w.kernel()) == {attackers[0], stranger}

    # After a restart the kernel holds exactly the store's active bans, with their time left.
    w.daemon.start()
    assert set(w.store()) == set(attackers), w.diagnostics()
    assert w.kernel_equals_store(), w.diagnostics()
    assert "Restored 2 active ban(s)" in w.daemon.log_text()

    # Flushed by hand: the attacker gets through, until reconciliation puts the bans back.
    view.flush(net.server, "sshd")
    assert w.kernel() == {}
    assert ssh(net.attacker, [tcp_job(v4_server)]) == ["banner"]
    flushed = time.monotonic()
    wait_for(w.kernel_equals_store, RECONCILE + 4,
             f"reconciliation (reconcileinterval = {RECONCILE}) to restore the sets")
    assert time.monotonic() - flushed <= RECONCILE + 4
    probes = ssh(net.attacker, [tcp_job(s) for s in servers])
    assert set(probes) <= SHUT, (probes, w.diagnostics())
    assert ssh(net.friend, [login_job(net.addr("server-friend", 6), PASSWORD)]) == [
        f"login:{USER}"]
