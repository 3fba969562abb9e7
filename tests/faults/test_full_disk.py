"""A full disk under the store costs no ban: the kernel holds every ban during the outage,
``status`` shows the backlog, and the store has them all within a minute once space returns.

The daemon runs in its own mount namespace (``unshare --mount``) with a 4 MB tmpfs holding its
store, so filling that tmpfs touches nothing of the host's; the firewall is nftables inside a
network namespace made for the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, stamp, wait_for
from tests.integration.netns import namespace, skip_reason
from tests.integration.probes import NftProbe

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
    pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("nsenter") is None,
                       reason="needs unshare and nsenter (util-linux)"),
]

JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = nftables
port = 8022
maxretry = 1
findtime = 1h
bantime = 1h
"""

COUNT = 500
OUTAGE = 30.0


def inside(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run in the daemon's mount namespace, where its tmpfs is."""
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "--", *argv], capture_output=True,
                          text=True, timeout=60, check=False)


def stored(pid: int, db: Path) -> int:
    code = ("import sqlite3, sys; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True);"
            "print(c.execute('select count(*) from active_bans').fetchone()[0])")
    done = inside(pid, sys.executable, "-c", code, str(db))
    return int(done.stdout) if done.returncode == 0 else -1


def test_full_store_disk_keeps_every_ban_and_writes_them_when_space_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with namespace() as server:
        monkeypatch.setenv("BANISH_NETNS", server.name)
        with Daemon(tmp_path, JAILS) as d:
            store = tmp_path / "store"
            store.mkdir()
            db = store / "banish.sqlite3"
            conf = (d.cfg / "banish.conf").read_text().replace(str(d.db), str(db))
            (d.cfg / "banish.conf").write_text(conf)
            d.start(prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f'mount -t tmpfs -o size=4m tmpfs {store} && exec "$@"', "sh"))
            assert d.proc is not None
            pid = d.proc.pid
            d.fail("a.log", "198.51.100.1")
            wait_for(lambda: stored(pid, db) == 1, what="a first ban stored")
            inside(pid, "dd", "if=/dev/zero", f"of={store}/filler", "bs=64k")  # ENOSPC ends it
            assert inside(pid, "df", "--output=avail", str(store)).stdout.split()[-1] == "0"
            addresses = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(COUNT)]
            t = stamp()
            d.append("a.log", *(f"{t} login failed for x from {ip}" for ip in addresses))
            started = time.monotonic()
            probe = NftProbe(server)
            wait_for(lambda: len(probe.bans("demo")) == COUNT + 1, timeout=30,
                     what="every ban in the kernel during the outage")
            status = json.loads(d.cli("status", "--json").stdout)
            assert status["store_backlog"] == COUNT and status["store_error"]
            assert "Problems" in d.cli("status").stdout
            while time.monotonic() - started < OUTAGE:  # the outage lasts; nothing drops
                assert len(probe.bans("demo")) == COUNT + 1
                time.sleep(1)
            assert stored(pid, db) == 1
            inside(pid, "rm", "-f", f"{store}/filler")
            wait_for(lambda: stored(pid, db) == COUNT + 1, timeout=60,
                     what="every ban in the store after space returned")
            status = json.loads(d.cli("status", "--json").stdout)
            assert status["store_backlog"] == 0 and status["store_error"] == ""
            assert len(probe.bans("demo")) == COUNT + 1
            assert "The store works again: wrote 500 ban(s)" in d.log_text()
            d.stop()
