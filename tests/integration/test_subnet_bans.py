"""Subnet bans in a real kernel: a banned IPv6 /64 and an escalated IPv4 /24 block every
address inside them, shown with packets between two network namespaces.

The daemon runs on the host with ``BANISH_NETNS`` so every nft command goes into the test's
"server" namespace; the "attacker" namespace holds several addresses of one /24 and one /64.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, stamp, wait_for
from tests.integration.netns import connect, link, namespace, skip_reason, tcp_server

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

PORT = 8022
JAILS = f"""
[demo]
enabled = true
filter = demo
logpath = {{logs}}/a.log
action = nftables
port = {PORT}
protocol = tcp
maxretry = 2
findtime = 10m
bantime = 1h
banprefix6 = 64
escalate = 3 in 1h
escalate.prefix4 = 24
"""


def test_banned_slash64_and_escalated_slash24_block_every_address(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    with namespace() as server, namespace() as attacker, tcp_server(server, [PORT]):
        link(server, attacker, ["10.211.0.1/24", "fd00:211::1/64"],
             ["10.211.0.5/24", "10.211.0.6/24", "10.211.0.7/24", "10.211.0.8/24",
              "fd00:211::5/64", "fd00:211::99/64"])
        probes = [("10.211.0.8", "10.211.0.1", PORT), ("fd00:211::99", "fd00:211::1", PORT)]
        assert connect(attacker, probes, timeout=5) == ["ok", "ok"]
        monkeypatch.setenv("BANISH_NETNS", server.name)
        with Daemon(tmp_path, JAILS) as d:
            d.start()
            t = stamp()
            d.append("a.log", *[f"{t} login failed for x from fd00:211::5"] * 2)
            wait_for(lambda: "fd00:211::/64" in d.bans(), what="the /64 ban")
            for ip in ("10.211.0.5", "10.211.0.6", "10.211.0.7"):
                d.append("a.log", *[f"{t} login failed for x from {ip}"] * 2)
            wait_for(lambda: "10.211.0.0/24" in d.bans(), what="the escalated /24")
            # .8 and ::99 never failed, yet both are inside a banned network
            results = connect(attacker, probes, timeout=2)
            assert all(r in ("refused", "timeout") for r in results), results
            banned = {r["ip"] for r in json.loads(d.cli("banned", "--json").stdout)}
            assert {"fd00:211::/64", "10.211.0.0/24"} <= banned
            sets = server.nft("list", "table", "inet", "banish")
            assert "fd00:211::/64" in sets and "10.211.0.0/24" in sets
            proc = d.cli("unban", "10.211.0.8", check=False)
            assert proc.returncode == 2 and "inside the banned subnet 10.211.0.0/24" in proc.stderr
            d.cli("unban", "10.211.0.0/24")
            d.cli("unban", "fd00:211::/64")
            assert connect(attacker, probes, timeout=5) == ["ok", "ok"]
            d.stop()
            assert os.environ["BANISH_NETNS"] == server.name
