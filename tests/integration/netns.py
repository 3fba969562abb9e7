"""Throw-away network namespaces for firewall tests: the host's ruleset and links are never touched.

Everything a test creates lives inside namespaces named ``banish-test-*``: veth pairs are
created inside one namespace with their peer moved straight into the other, addresses are
private (10.2xx.0.0/16, fd00:2xx::/48), and deleting the namespace removes its nftables
ruleset, links and sockets with it. Servers and clients run as ``ip netns exec NS python``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_SERVER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        s.listen(64)
        sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.sendall(b"ok")
        conn.close()
"""

_CLIENT = r"""
import concurrent.futures, json, socket, sys
probes, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def connect(probe):
    src, dst, port = probe
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.bind((src, 0))
            s.connect((dst, port))
            return "ok" if s.recv(2) == b"ok" else "bad reply"
        except ConnectionRefusedError:
            return "refused"
        except (socket.timeout, TimeoutError):
            return "timeout"
        except OSError as exc:
            return "error: %s" % exc
with concurrent.futures.ThreadPoolExecutor(len(probes) or 1) as pool:
    print(json.dumps(list(pool.map(connect, probes))))
"""


def skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt install iproute2 nftables)"
    return None


class Namespace:
    """One network namespace; `delete` (or leaving `namespace()`) removes all it holds."""

    def __init__(self) -> None:
        self.name = f"banish-test-{os.getpid()}-{secrets.token_hex(3)}"
        done = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ip netns add failed: {done.stderr.strip()}")
        self.run("ip", "link", "set", "lo", "up")
        # No IPv6 duplicate address detection on links made here: while the link-local
        # address is "tentative", neighbour discovery loses the first packets of a test.
        for scope in ("all", "default"):
            self.run("sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            self.argv(*argv), input=stdin, capture_output=True, text=True, timeout=30
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {self.name}: {done.stderr.strip()}")
        return done.stdout

    def nft(self, *args: str, stdin: str | None = None) -> str:
        return self.run("nft", *args, stdin=stdin)

    def nft_json(self, *args: str) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = json.loads(self.nft("-j", *args))["nftables"]
        return objects

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


@contextmanager
def namespace() -> Iterator[Namespace]:
    ns = Namespace()
    try:
        yield ns
    finally:
        ns.delete()


def link(
    a: Namespace,
    b: Namespace,
    a_addrs: Sequence[str],
    b_addrs: Sequence[str],
    *,
    a_dev: str = "veth-a",
    b_dev: str = "veth-b",
) -> None:
    """Join two namespaces by a veth pair, created in ``a`` with its peer born inside ``b``."""
    a.run("ip", "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b.name)
    for ns, dev, addrs in ((a, a_dev, a_addrs), (b, b_dev, b_addrs)):
        for addr in addrs:
            ns.run("ip", "addr", "add", addr, "dev", dev)
        ns.run("ip", "link", "set", dev, "up")


@contextmanager
def tcp_server(ns: Namespace, ports: Sequence[int]) -> Iterator[None]:
    """A server in ``ns`` answering "ok" on every port, IPv4 and IPv6, until the block ends."""
    with subprocess.Popen(
        ns.argv(sys.executable, "-c", _SERVER, *map(str, ports)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            if proc.stdout.readline().strip() != "ready":  # returns early if the server dies
                raise RuntimeError(f"test server did not start: {proc.stderr.read()}")
            yield
        finally:
            proc.kill()


def connect(
    ns: Namespace, probes: Sequence[tuple[str, str, int]], timeout: float = 1.0
) -> list[str]:
    """Try each (source address, destination, port) from ``ns`` at once.

    Returns "ok", "refused" (a reject, or nobody listening), "timeout" (a drop) or an error.
    """
    out = ns.run(sys.executable, "-c", _CLIENT, json.dumps([list(p) for p in probes]), str(timeout))
    results: list[str] = json.loads(out)
    return results


def wait_until(predicate: Any, *, limit: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``limit`` seconds passed: for kernel timers only."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
