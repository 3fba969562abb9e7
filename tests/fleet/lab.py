"""A fleet on one machine: a throwaway PostgreSQL, banish daemons each in its own network
namespace with its own nftables table, and an "internet" namespace holding the attacker's
and the friend's addresses, linked to every node.

Each node ``n`` (1, 2, 3...) is 10.214.n.1 on its link; the internet side is 10.214.n.2 and
routes 10.214.9.0/24 (its loopback addresses: attackers, friends) to every node, so one
attacker address can knock on every server, as on the real internet. Daemons reach the
database through its Unix socket (a file, the same from every namespace). Everything is made
in the test's temporary directory and namespaces, and removed when the block ends.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.postgres import Cluster
from tests.integration.daemon import Daemon, wait_for
from tests.integration.netns import Namespace, connect, link, tcp_server
from tests.integration.probes import NftProbe

PORT = 8022
INTERNET = "10.214.9."

JAIL = """
[DEFAULT]
bantime = 1h
findtime = 10m
maxretry = 3
fleet = both

[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = nftables
port = 8022
%s
"""


class Node:
    def __init__(self, name: str, index: int, ns: Namespace, daemon: Daemon) -> None:
        self.name = name
        self.index = index
        self.ns = ns
        self.daemon = daemon

    @property
    def address(self) -> str:
        return f"10.214.{self.index}.1"

    def kernel(self, jail: str = "demo") -> set[str]:
        """Addresses in this node's nftables ban sets (the kernel's view, not banish's)."""
        return {str(net.network_address) if net.prefixlen in (32, 128) else str(net)
                for net in NftProbe(self.ns).bans(jail)}

    def kernel_left(self, address: str, jail: str = "demo") -> float | None:
        return NftProbe(self.ns).bans(jail).get(ip_network(address))

    def fleet(self) -> dict[str, Any]:
        out = self.daemon.cli("status", "--fleet", "--json").stdout
        return dict(json.loads(out)["fleet"])

    def fail(self, address: str, count: int = 3) -> None:
        self.daemon.fail("a.log", address, count)


class FleetLab:
    def __init__(self, pg: Cluster, root: Path, monkeypatch: pytest.MonkeyPatch,
                 database: str) -> None:
        self.pg = pg
        self.root = root
        self.monkeypatch = monkeypatch
        self.database = database
        self.passfile = pg.passfile(root)
        self.nodes: dict[str, Node] = {}
        self.internet = Namespace()
        self.stack = ExitStack()

    def add(self, name: str, jail_extra: str = "", *, start: bool = True,
            fleet_extra: str = "") -> Node:
        index = len(self.nodes) + 1
        ns = Namespace()
        link(ns, self.internet, [f"10.214.{index}.1/24"], [f"10.214.{index}.2/24"],
             a_dev="vnode", b_dev=f"vnet{index}")
        ns.run("ip", "route", "add", f"{INTERNET}0/24", "via", f"10.214.{index}.2")
        daemon = Daemon(self.root / name, JAIL % jail_extra)
        with open(daemon.cfg / "banish.conf", "a") as conf:
            conf.write(f"\n[fleet]\ndatabase = {self.pg.node_dsn(self.database)}\n"
                       f"node = {name}\npassfile = {self.passfile}\n{fleet_extra}")
        node = Node(name, index, ns, daemon)
        self.nodes[name] = node
        self.stack.enter_context(tcp_server(ns, [PORT]))
        if start:
            self.start(node)
        return node

    def start(self, node: Node, *, wait_ready: bool = True) -> None:
        self.monkeypatch.setenv("BANISH_NETNS", node.ns.name)
        node.daemon.start()
        if wait_ready:
            wait_for(lambda: node.fleet()["caught_up"] and node.fleet()["connected"],
                     timeout=30, what=f"node {node.name} connected to the fleet")

    def address(self, last: int) -> str:
        """An internet address, made to exist on the internet namespace's loopback."""
        addr = f"{INTERNET}{last}"
        self.internet.run("ip", "addr", "replace", f"{addr}/32", "dev", "lo")
        return addr

    def reach(self, source: str) -> dict[str, str]:
        """From ``source``, try every node's port: "ok", or "timeout" when it drops us."""
        names = list(self.nodes)
        results = connect(self.internet, [(source, self.nodes[n].address, PORT)
                                          for n in names], timeout=1.0)
        return dict(zip(names, results, strict=True))

    def sql(self, statement: str) -> str:
        """As the database owner (a hostile row needs no banish to get in)."""
        return self.pg.psql(statement, database=self.database, user="banish_owner")

    def close(self) -> None:
        for node in self.nodes.values():
            with suppress(Exception):
                node.daemon.stop()
            if node.daemon.proc is not None:
                node.daemon.proc.kill()
        self.stack.close()
        for node in self.nodes.values():
            node.ns.delete()
        self.internet.delete()


@contextmanager
def fleet_lab(pg: Cluster, root: Path, monkeypatch: pytest.MonkeyPatch,
              servers: Mapping[str, str] | None = None) -> Iterator[FleetLab]:
    """A fresh fleet database and the given nodes (name -> extra jail lines), started, with
    a TCP service on every node's port."""
    database = pg.new_database(f"fleet_{os.getpid()}_{secrets.token_hex(3)}")
    lab = FleetLab(pg, root, monkeypatch, database)
    with ExitStack() as stack:
        stack.callback(lab.close)
        for name, extra in (servers or {}).items():
            lab.add(name, extra, start=False)
        for node in lab.nodes.values():
            lab.start(node)
        yield lab


def bulk_ban(node: Node, addresses: list[str], jail: str = "demo") -> None:
    """``banish ban JAIL -``: a blocklist load, addresses on standard input."""
    subprocess.run([sys.executable, "-m", "banish.cli.main", "--socket",
                    str(node.daemon.socket), "ban", jail, "-"],
                   input="\n".join(addresses) + "\n", text=True, check=True,
                   capture_output=True, timeout=120)
