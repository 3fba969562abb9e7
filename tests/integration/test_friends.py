"""Friends with dynamic addresses, end to end: a real resolver (the system's, reading a hosts
file the test controls), the real daemon, nftables in network namespaces.

The daemon runs in its own mount namespace (``unshare --mount``) where the test's hosts file is
bound over /etc/hosts, so "changing the DNS record" is rewriting that file; the host's own
/etc/hosts is never touched. Firewall commands go into the "server" namespace
(``BANISH_NETNS``); a "client" namespace holds the friend's two addresses and strangers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, stamp, wait_for
from tests.integration.netns import Namespace, connect, link, namespace, skip_reason, tcp_server

pytestmark = [
    pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
]

SERVER = "10.213.0.1"
OLD, NEW, OTHER, STRANGER = "10.213.0.5", "10.213.0.6", "10.213.0.7", "10.213.0.9"
NEIGHBOURS = ["10.213.0.21", "10.213.0.22", "10.213.0.23"]
REFRESH = 1  # seconds (ignoreresolve)

FRIENDS_ONLY = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = nftables
port = 8022
maxretry = 1
bantime = 1h
%s

[friends-only ssh]
port = 22
protocol = tcp
friends = home.test
"""


@contextmanager
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jails: str
        ) -> Iterator[tuple[Daemon, Namespace, Namespace, Path]]:
    with namespace() as server, namespace() as client, tcp_server(server, [22, 8022]):
        link(server, client, [f"{SERVER}/24"],
             [f"{a}/24" for a in (OLD, NEW, OTHER, STRANGER, *NEIGHBOURS)])
        monkeypatch.setenv("BANISH_NETNS", server.name)
        hosts = tmp_path / "hosts"
        write_hosts(hosts, OLD)
        with Daemon(tmp_path, jails) as d:
            conf = d.cfg / "banish.conf"
            conf.write_text(conf.read_text() + f"ignoreresolve = {REFRESH}\n")
            yield d, server, client, hosts
            d.stop()


def write_hosts(path: Path, address: str | None) -> None:
    """In place (same inode: it is bind-mounted), as a DNS record changing."""
    text = "127.0.0.1 localhost\n" + (f"{address} home.test\n" if address else "")
    with open(path, "r+" if path.exists() else "w") as fh:
        fh.truncate(0)
        fh.write(text)


def start(d: Daemon, hosts: Path) -> None:
    d.start(prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c",
                    f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh"))


def friend_set(server: Namespace) -> set[str]:
    """The IPv4 friends of the ssh service as the kernel holds them (one atomic listing)."""
    out: set[str] = set()
    for obj in server.nft_json("list", "table", "inet", "banish"):
        s = obj.get("set")
        if s and "friends" in s["name"] and s["type"] == "ipv4_addr":
            for e in s.get("elem", []):
                e = e.get("elem", {}).get("val", e) if isinstance(e, dict) else e
                if isinstance(e, dict) and "prefix" in e:
                    e = e["prefix"]["addr"]
                elif isinstance(e, dict) and "range" in e:
                    e = e["range"][0]
                out.add(str(e))
    return out


def test_a_friends_dynamic_address_is_followed_without_a_gap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with lab(tmp_path, monkeypatch, FRIENDS_ONLY % "") as (d, server, client, hosts):
        start(d, hosts)
        assert connect(client, [(OLD, SERVER, 22), (STRANGER, SERVER, 22)], timeout=2) == [
            "ok", "timeout"]
        assert connect(client, [(STRANGER, SERVER, 8022)], timeout=2) == ["ok"]
        assert friend_set(server) == {OLD}
        snapshots: list[set[str]] = []
        stop = threading.Event()

        def watch() -> None:  # every state the kernel is seen in during the change
            while not stop.is_set():
                snapshots.append(friend_set(server))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            write_hosts(hosts, NEW)
            changed = time.monotonic()
            wait_for(lambda: friend_set(server) == {NEW}, timeout=REFRESH + 5,
                     what="the new address in the kernel")
            assert time.monotonic() - changed < REFRESH + 3  # within the refresh interval
            time.sleep(0.3)
        finally:
            stop.set()
            watcher.join()
        assert snapshots and all(s & {OLD, NEW} for s in snapshots), snapshots
        assert connect(client, [(NEW, SERVER, 22), (OLD, SERVER, 22)], timeout=2) == [
            "ok", "timeout"]
        names = {n["name"]: n for n in json.loads(d.cli("status", "--json").stdout)["names"]}
        assert names["home.test"]["addresses"] == [NEW] and names["home.test"]["resolved_at"]
        assert "home.test = " + NEW in d.cli("status").stdout
        # The DNS provider goes down: the last address stays, and status says so.
        write_hosts(hosts, None)
        wait_for(lambda: json.loads(d.cli("status", "--json").stdout)["names"][0]["error"],
                 timeout=REFRESH + 5, what="the failed lookup in status")
        assert friend_set(server) == {NEW}
        assert connect(client, [(NEW, SERVER, 22)], timeout=2) == ["ok"]
        assert "host name home.test" in d.cli("status").stdout


def test_a_friend_in_ignoreip_reaches_the_jail_inside_an_escalated_subnet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jails = FRIENDS_ONLY % ("ignoreip = home.test\nescalate = 3 in 1h\nescalate.prefix4 = 24")
    jails = jails.split("[friends-only ssh]")[0]
    with lab(tmp_path, monkeypatch, jails) as (d, _server, client, hosts):
        start(d, hosts)
        t = stamp()
        d.append("a.log", *(f"{t} login failed for x from {ip}" for ip in NEIGHBOURS))
        wait_for(lambda: "10.213.0.0/24" in d.bans(), what="the escalated /24")
        write_hosts(hosts, NEW)  # the friend's line got a new address, inside that /24
        wait_for(lambda: json.loads(d.cli("status", "--json").stdout)["names"][0]["addresses"]
                 == [NEW], timeout=REFRESH + 5, what="the new address resolved")
        results = connect(client, [(NEW, SERVER, 8022), (OTHER, SERVER, 8022)], timeout=2)
        assert results[0] == "ok" and results[1] in ("refused", "timeout")
        d.append("a.log", f"{stamp()} login failed for x from {NEW}")  # never banned either
        d.append("a.log", f"{stamp()} login failed for x from 10.213.1.1")
        wait_for(lambda: "10.213.1.1" in d.bans(), what="a later ban")
        assert NEW not in d.bans()


def test_the_ssh_session_guard_refuses_a_cut_off_and_i_know_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with lab(tmp_path, monkeypatch, FRIENDS_ONLY % "") as (d, server, _client, hosts):
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh",
               sys.executable, "-m", "banish.cli.main", "run", "--config", str(d.cfg)]
        env = dict(os.environ, SSH_CONNECTION=f"{STRANGER} 50022 {SERVER} 22")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.count("\n") == 1
        assert f"would cut off this SSH session from {STRANGER}" in done.stderr
        assert "--i-know" in done.stderr
        assert not server.nft("list", "ruleset").strip()  # nothing was applied
        # The friend's own session is let through; a stranger's with --i-know too.
        env["SSH_CONNECTION"] = f"{OLD} 50022 {SERVER} 22"
        monkeypatch.setenv("SSH_CONNECTION", env["SSH_CONNECTION"])
        start(d, hosts)
        d.stop()
        monkeypatch.setenv("SSH_CONNECTION", f"{STRANGER} 50022 {SERVER} 22")
        d.start(prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'mount --bind {hosts} /etc/hosts && exec "$@" --i-know', "sh"))
        assert friend_set(server) == {OLD}
        # A reload that brings a new service on the session's port is guarded the same way.
        d.write_jails((FRIENDS_ONLY % "") + "\n[friends-only admin]\nport = 22\n"
                      "friends = 198.51.100.1\n")
        refused = d.cli("reload", check=False)
        assert refused.returncode == 2 and "friends-only admin would cut off" in refused.stderr
        status = json.loads(d.cli("status", "--json").stdout)
        assert [f["name"] for f in status["friends"]] == ["ssh"]  # the running config stayed
        assert d.cli("reload", "--i-know").returncode == 0
        status = json.loads(d.cli("status", "--json").stdout)
        assert [f["name"] for f in status["friends"]] == ["ssh", "admin"]
