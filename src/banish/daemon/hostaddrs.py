"""This host's own addresses, for ``ignoreself`` (never ban ourselves).

Owns asking the system (the host name's addresses and every interface's, through ``ip -j``).
Shared by the daemon and ``banish scan``, so both ignore the same addresses.
"""

from __future__ import annotations

import json
import socket
import subprocess


def own_addresses() -> tuple[str, ...]:
    """This host's addresses, for ``ignoreself`` (never ban ourselves)."""
    found = {"127.0.0.1", "::1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    try:
        done = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, timeout=5,
                              check=False)
        for iface in json.loads(done.stdout or b"[]"):
            for addr in iface.get("addr_info", []):
                if addr.get("local"):
                    found.add(str(addr["local"]))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return tuple(sorted(found))
