"""nft failing for a while: the real daemon keeps every ban and retries until the kernel has it.

A wrapper script named ``nft`` stands first on the daemon's PATH (only the daemon's: it is
started through ``env PATH=...``). The nftables backend runs ``ip netns exec NS nft ...``
(``actions/tools.py`` prefix, ``process.run_process`` argv), and ``ip netns exec`` finds its
program with ``execvp``, i.e. through that PATH; the tests check the wrapper really saw the
daemon's calls. The wrapper execs the real nft until armed: then it fails (exit 1, a message
on stderr, as nft does when the kernel refuses) for the first N calls after the trigger file
appears, N being the file's content, and afterwards execs the real nft again.

The tests arm it with an unbounded budget ("failing until told"), look at the daemon while nft
fails (bans recorded and reported, ``status`` showing them as failed, retries happening with
nobody asking), then grant exactly a few more failures, and measure from the moment the last
injected failure happened until the kernel holds every ban: the daemon retries every tick
(``runtime._maintain`` -> ``enforcer.retry_failed`` -> ``reconcile``), so that must take at
most a tick or two plus nft's own time. The same holds when nft already fails as the daemon
starts: it starts, its jails run, ``status`` names the firewall error, and the table and every
ban (restored ones too) appear once nft works. An unban that nft refuses must leave the kernel
within the same bound (it did not: only the periodic reconcile let it go). Every firewall change happens
inside a namespace the test creates; the host's ruleset is never touched (checks read it with
the real nft).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from banish.daemon.runtime import TICK
from tests.integration.daemon import Daemon, wait_for
from tests.integration.netns import Namespace, namespace, skip_reason

REAL_NFT = shutil.which("nft") or "/usr/sbin/nft"
_SKIP = skip_reason() or (None if shutil.which("flock") else "'flock' is not installed")

pytestmark = [pytest.mark.faults, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

RETRY_WITHIN = 2 * TICK + 3.0
"""Seconds from nft working again to every ban in the kernel: one tick until the next retry,
one more if the last injected failure was the first of a reconcile's two nft calls (its
`list tables` fallback then succeeds but the reconcile still fails), plus the nft runs
themselves on a busy two-core machine."""

JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = nftables
port = 8022
protocol = tcp
maxretry = 2
findtime = 10m
bantime = 1h
"""

_WRAPPER = """#!/bin/sh
# banish fault test: nft failing its first N calls after $D/armed appears (N: its content).
D='{dir}'
echo "$*" >> "$D/calls"
if [ -e "$D/armed" ]; then
    exec 9>"$D/lock"
    flock 9
    budget=$(cat "$D/armed")
    done=$(cat "$D/failed" 2>/dev/null || echo 0)
    if [ "$done" -lt "$budget" ]; then
        echo $((done + 1)) > "$D/failed"
        echo "Error: Could not process rule: Operation not permitted (injected failure, banish fault test)" >&2
        exit 1
    fi
    exec 9>&-
fi
exec '{real}' "$@"
"""

FOREVER = 1_000_000


class FlakyNft:
    """The wrapper's directory: ``bin/nft``, the trigger file, the count of failures made."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        (root / "bin").mkdir(parents=True)
        script = root / "bin" / "nft"
        script.write_text(_WRAPPER.format(dir=root, real=REAL_NFT))
        script.chmod(0o755)

    def prefix(self) -> tuple[str, ...]:
        """Daemon.start's prefix: the wrapper first on the daemon's PATH, nobody else's."""
        return ("env", f"PATH={self.dir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / "lock", "a") as fh:  # the lock the wrapper takes with flock(1)
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _write(self, name: str, value: int) -> None:
        tmp = self.dir / f".{name}"
        tmp.write_text(f"{value}\n")
        os.replace(tmp, self.dir / name)

    def arm(self, budget: int = FOREVER) -> None:
        """Fail the next ``budget`` calls (FOREVER: until `fail_more` says how many more)."""
        with self._locked():
            self._write("failed", 0)
            self._write("armed", budget)

    def fail_more(self, count: int) -> int:
        """From now on fail exactly ``count`` more calls, then work; returns the total."""
        with self._locked():
            total = self.failed() + count
            self._write("armed", total)
        return total

    def failed(self) -> int:
        try:
            return int((self.dir / "failed").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def calls(self) -> list[str]:
        try:
            return (self.dir / "calls").read_text().splitlines()
        except FileNotFoundError:
            return []

    def recovered_at(self, total: int) -> float:
        """Wait until the ``total``-th failure happened (the daemon's own retries make it);
        the monotonic time just after, i.e. when nft worked again."""
        wait_for(lambda: self.failed() >= total, timeout=total + 30.0,
                 what=f"the daemon's retries to use up {total} injected nft failures")
        return time.monotonic()


def kernel_bans(ns: Namespace, jail: str = "demo") -> set[str] | None:
    """Addresses and networks in the jail's ban sets (real nft); None: no banish table."""
    out = ns.run(REAL_NFT, "-j", "list", "table", "inet", "banish", check=False)
    if not out.strip():
        return None
    found: set[str] = set()
    for obj in json.loads(out)["nftables"]:
        s = obj.get("set")
        if s is None or not s["name"].startswith(f"{jail}-v"):
            continue
        for elem in s.get("elem", []):
            value = elem["elem"]["val"] if isinstance(elem, dict) and "elem" in elem else elem
            if isinstance(value, dict) and "prefix" in value:
                value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
            found.add(str(value))
    return found


def kernel_chains(ns: Namespace) -> set[str]:
    out = ns.run(REAL_NFT, "-j", "list", "table", "inet", "banish", check=False)
    if not out.strip():
        return set()
    return {o["chain"]["name"] for o in json.loads(out)["nftables"] if "chain" in o}


def stored(d: Daemon) -> set[str]:
    """The store's active bans (read-only; the daemon holds it in WAL mode)."""
    with sqlite3.connect(f"file:{d.db}?mode=ro", uri=True) as con:
        return {row[0] for row in con.execute("SELECT address FROM active_bans")}


def reported(d: Daemon) -> set[str]:
    return {row["ip"] for row in json.loads(d.cli("banned", "--json").stdout)}


def status(d: Daemon) -> dict[str, object]:
    return dict(json.loads(d.cli("status", "--json").stdout))


@contextmanager
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[FlakyNft, Namespace, Daemon]]:
    """The wrapper, a namespace for the daemon's firewall, and the daemon (not started)."""
    nft = FlakyNft(tmp_path / "nft")
    with namespace() as ns, Daemon(tmp_path / "daemon", JAILS) as d:
        monkeypatch.setenv("BANISH_NETNS", ns.name)
        yield nft, ns, d


def test_bans_made_while_nft_fails_are_kept_reported_and_applied_on_the_next_tick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with setup(tmp_path, monkeypatch) as (nft, ns, d):
        d.start(prefix=nft.prefix())
        assert any(c.startswith("-j") for c in nft.calls()), "the daemon's nft is not the wrapper"
        d.fail("a.log", "203.0.113.1", 2)  # banned while nft works: must survive the outage
        wait_for(lambda: "203.0.113.1" in (kernel_bans(ns) or set()), what="the first ban")

        nft.arm()
        d.fail("a.log", "203.0.113.5", 2)
        d.fail("a.log", "2001:db8::5", 2)
        answer = d.cli("ban", "demo", "198.51.100.7", "2001:db8:1::/64", check=False)
        assert answer.returncode == 0, answer.stderr
        made = {"203.0.113.5", "2001:db8::5", "198.51.100.7", "2001:db8:1::/64"}
        # Recorded and reported although the firewall refused them.
        wait_for(lambda: made <= reported(d), what="the bans in `banned`")
        assert made | {"203.0.113.1"} <= stored(d)
        wait_for(lambda: status(d)["failed_bans"] == len(made), what="failed_bans in status")
        assert made.isdisjoint(kernel_bans(ns) or set())
        # Lifted by hand during the outage: gone from the store at once, from the kernel later.
        d.cli("unban", "203.0.113.1")
        assert "203.0.113.1" not in stored(d) | reported(d)
        # Retried with nobody asking: the failures keep coming while nothing else happens.
        seen = nft.failed()
        nft.recovered_at(seen + 3)
        log = d.log_text()
        assert "Applying 1 ban(s) with nftables failed (will retry)" in log, log
        assert "injected failure" in log

        total = nft.fail_more(3)
        recovered = nft.recovered_at(total)
        wait_for(lambda: made <= (kernel_bans(ns) or set()), timeout=RETRY_WITHIN,
                 what=f"every ban in the kernel within {RETRY_WITHIN:g} s of nft working")
        print(f"kernel complete {time.monotonic() - recovered:.2f} s after nft worked again")
        assert kernel_bans(ns) == made, "the unbanned address must leave the kernel too"
        wait_for(lambda: status(d)["failed_bans"] == 0, timeout=RETRY_WITHIN,
                 what="failed_bans back to 0")
        assert status(d)["firewall_errors"] == []
        assert reported(d) == made == stored(d)
        assert nft.failed() == total  # no call failed that the test did not ask for
        d.stop()
        assert kernel_bans(ns) is None  # a clean stop with nft working removes the table


def test_nft_failing_at_start_the_daemon_runs_and_builds_everything_once_nft_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with setup(tmp_path, monkeypatch) as (nft, ns, d):
        # A ban in the store from an earlier run, to be restored while nft fails.
        d.start(prefix=nft.prefix())
        d.cli("ban", "demo", "198.51.100.9")
        d.stop()
        assert kernel_bans(ns) is None and stored(d) == {"198.51.100.9"}

        nft.arm()
        d.start(prefix=nft.prefix())  # ready although the firewall cannot be built
        first = status(d)
        assert first["jails"] == ["demo"] and first["skipped"] == []
        errors = first["firewall_errors"]
        assert isinstance(errors, list) and [e["backend"] for e in errors] == ["nftables"]
        assert "injected failure" in errors[0]["error"], errors
        assert "Starting the nftables firewall failed (bans will be retried)" in d.log_text()
        assert reported(d) == {"198.51.100.9"}  # restored from the store, not yet applied
        # The jail runs: a failure in the log still becomes a recorded ban.
        d.fail("a.log", "203.0.113.20", 2)
        d.fail("a.log", "2001:db8::20", 2)
        made = {"198.51.100.9", "203.0.113.20", "2001:db8::20"}
        wait_for(lambda: reported(d) == made, what="bans from the log while nft fails")
        assert stored(d) == made
        wait_for(lambda: status(d)["failed_bans"] == len(made), what="failed_bans in status")
        assert kernel_bans(ns) is None  # nothing was built

        total = nft.fail_more(2)
        recovered = nft.recovered_at(total)
        wait_for(lambda: kernel_bans(ns) == made, timeout=RETRY_WITHIN,
                 what=f"table and bans within {RETRY_WITHIN:g} s of nft working")
        print(f"table and bans {time.monotonic() - recovered:.2f} s after nft worked again")
        assert {"input", "jail-demo"} <= kernel_chains(ns)
        wait_for(lambda: status(d)["firewall_errors"] == [] and status(d)["failed_bans"] == 0,
                 timeout=RETRY_WITHIN, what="status clear")
        assert "The nftables firewall works again" in d.log_text()
        assert nft.failed() == total


def test_an_unban_nft_refused_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """Only the unban's own nft call fails, nothing else is pending: the address must still
    leave the kernel within the retry interval, as a refused ban reaches it, not stay blocked
    until the periodic reconcile (5 minutes) or its kernel timeout (the bantime)."""
    with setup(tmp_path, monkeypatch) as (nft, ns, d):
        d.start(prefix=nft.prefix())
        d.cli("ban", "demo", "198.51.100.30", "198.51.100.31")
        assert kernel_bans(ns) == {"198.51.100.30", "198.51.100.31"}
        nft.arm(1)
        d.cli("unban", "198.51.100.30")
        assert nft.failed() == 1 and "Lifting 1 ban(s) with nftables failed" in d.log_text()
        assert reported(d) == {"198.51.100.31"} == stored(d)
        recovered = time.monotonic()
        wait_for(lambda: kernel_bans(ns) == {"198.51.100.31"}, timeout=RETRY_WITHIN,
                 what=f"the unbanned address out of the kernel within {RETRY_WITHIN:g} s")
        print(f"unban applied {time.monotonic() - recovered:.2f} s after nft worked again")
