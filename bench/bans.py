#!/usr/bin/env python3
"""Times 100,000 bans through the banish daemon into nftables, against fail2ban's per-ban action.

Owns: the daemon-level ban benchmark and the dated "daemon bans" sections appended to
bench/RESULTS.md with --record.

Every firewall change happens inside a network namespace this script creates and deletes
(``banish-bench-*``), never in the host's ruleset; the addresses are only ever set elements,
no packet is sent to any of them.

What is timed, all on the same machine in one run:

- banish: the real daemon (``banish run``, nftables backend, ``BANISH_NETNS``) with one jail;
  ``banish ban JAIL -`` reads N distinct addresses (IPv4 and IPv6 mixed) from stdin. The clock
  runs from starting that command until it exits: the daemon answers only after the bans are
  in the store and in the kernel (checked afterwards by counting the kernel's set elements).
  If this banish has no ``ban`` verb yet, the daemon is fed a log with 3 failures per address
  instead, and the clock runs until its log shows the N-th ``Ban`` (the table says which).
- fail2ban: the installed fail2ban-server (Debian package) started inside its own namespace with
  a one-jail config that uses its own ``nftables`` action; ``fail2ban-client set JAIL banip``
  with --f2b-count addresses, the clock running until the kernel holds them all. fail2ban runs
  one shell + ``nft`` process per ban, so 100,000 would take most of an hour: the per-ban cost
  is measured on fewer and the 100,000 row is an extrapolation, labelled as such.
- raw nft, for scale: --nft-count ``nft add element`` processes one after the other (what any
  per-ban action costs at the very least), and one ``nft -f`` transaction adding all N.

Must not: touch the host's firewall, send traffic, or edit any section of RESULTS.md but append
its own.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import machine  # bench/machine.py (scripts run as bench/NAME.py)
from run_regex import REPO, RESULTS, Banish, find_banish

JAIL = "bench"
SECTION = "daemon bans (bench/bans.py)"


# --- helpers ---------------------------------------------------------------------------------


def addresses(count: int, v6_share: float, seed: int) -> list[str]:
    """``count`` distinct addresses, a ``v6_share`` of them IPv6; a pure function of the seed.

    IPv4 from 10.0.0.0/8 and IPv6 from fd00::/8 (private ranges: they are only set elements)."""
    rng = random.Random(seed)
    n6 = round(count * v6_share)
    v4 = rng.sample(range(1, 1 << 24), count - n6)
    out = [str(ipaddress.IPv4Address((10 << 24) | n)) for n in v4]
    seen: set[int] = set()
    while len(seen) < n6:
        seen.add((0xFD << 120) | rng.getrandbits(120))
    out += [str(ipaddress.IPv6Address(n)) for n in sorted(seen)]
    rng.shuffle(out)
    return out


class Netns:
    """A throw-away network namespace; `close` kills what still runs in it, then deletes it."""

    def __init__(self, role: str) -> None:
        self.name = f"banish-bench-{role}-{os.getpid()}-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, stdin: str | None = None, timeout: float = 600) -> str:
        done = subprocess.run(self.argv(*argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {self.name}: {done.stderr.strip()[:500]}")
        return done.stdout

    def set_sizes(self, table: str, sets: list[str]) -> int:
        """Elements in the named sets of ``inet table`` (0 for a set not there yet)."""
        total = 0
        for name in sets:
            done = subprocess.run(self.argv("nft", "-j", "list", "set", "inet", table, name),
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                continue
            for obj in json.loads(done.stdout)["nftables"]:
                if "set" in obj:
                    total += len(obj["set"].get("elem", []))
        return total

    def close(self) -> None:
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:  # only what this script started in its own namespace
            with suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@contextmanager
def netns(role: str) -> Iterator[Netns]:
    ns = Netns(role)
    try:
        yield ns
    finally:
        ns.close()


def wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
         ) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True, slots=True)
class Row:
    what: str
    bans: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.bans / self.seconds if self.seconds > 0 else float("inf")


def extrapolated(row: Row, count: int) -> Row:
    return Row(f"{row.what}, extrapolated", count, row.seconds / row.bans * count,
               f"from {row.bans} measured")


# --- banish ----------------------------------------------------------------------------------


_FILTER = "[Definition]\nfailregex = ^\\s*bench: failure from <HOST>$\n"


class BanishDaemon:
    """``banish run`` with one nftables jail, its firewall inside ``ns``."""

    def __init__(self, banish: Banish, ns: Netns, root: Path, banaction: str) -> None:
        self.banish, self.ns, self.root = banish, ns, root
        cfg = root / "cfg"
        (cfg / "filter.d").mkdir(parents=True)
        (cfg / "filter.d" / "bench.conf").write_text(_FILTER)
        self.feed = root / "bench.log"
        self.feed.touch()
        (cfg / "jail.conf").write_text(
            f"[{JAIL}]\nenabled = true\nfilter = bench\nlogpath = {self.feed}\n"
            f"banaction = {banaction}\naction = %(banaction)s\nport = ssh\nmaxretry = 3\n"
            "findtime = 1h\nbantime = 1d\n")
        self.socket = root / "banish.sock"
        self.log = root / "banish.log"
        (cfg / "banish.conf").write_text(
            f"[Definition]\nsocket = {self.socket}\npidfile = {root / 'banish.pid'}\n"
            f"dbfile = {root / 'banish.sqlite3'}\nlogtarget = {self.log}\n")
        env = dict(banish.env or os.environ, BANISH_NETNS=ns.name)
        self.env = env
        self.stderr = open(root / "stderr.txt", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*banish.argv, "run", "--config", str(cfg)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        wait(lambda: "banish is ready" in self.log_text() or self.proc.poll() is not None,
             60, "banish to start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"banish run failed: {(root / 'stderr.txt').read_text()[-2000:]}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def has_ban_verb(self) -> bool:
        done = subprocess.run([*self.banish.argv, "ban", "--help"], env=self.env,
                              capture_output=True, text=True, timeout=60)
        return done.returncode == 0

    def ban_stdin(self, ips: list[str]) -> float:
        data = "\n".join(ips) + "\n"
        argv = [*self.banish.argv, "--socket", str(self.socket), "ban", JAIL, "-"]
        start = time.perf_counter()
        done = subprocess.run(argv, input=data, env=self.env, capture_output=True, text=True,
                              timeout=3600)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"banish ban failed ({done.returncode}): {done.stderr.strip()}")
        return seconds

    def ban_by_log(self, ips: list[str]) -> float:
        """3 failures per address appended at once; done when banish's log has reported every
        ban (it logs a ban only after the firewall applied it)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = "".join(f"{stamp} bench: failure from {ip}\n" for ip in ips for _ in range(3))
        # One line per ban, or one "Ban N addresses at once" line for a bulk batch.
        pattern = re.compile(rf"NOTICE\s+\[{JAIL}\] Ban (?:(\d+) addresses at once|\S+$)",
                             re.MULTILINE)
        seen = 0
        offset = 0
        start = time.perf_counter()
        with open(self.feed, "a") as fh:
            fh.write(text)

        def done() -> bool:
            nonlocal seen, offset
            with open(self.log, errors="replace") as fh:
                fh.seek(offset)
                chunk = fh.read()
            cut = chunk.rfind("\n") + 1
            offset += len(chunk[:cut].encode())
            seen += sum(int(n) if n else 1 for n in pattern.findall(chunk[:cut]))
            return seen >= len(ips)

        wait(lambda: done() or self.proc.poll() is not None, 60 + len(ips) / 100,
             f"{len(ips)} bans in banish's log", interval=0.02)
        if self.proc.poll() is not None:
            raise RuntimeError("banish run died while banning")
        return time.perf_counter() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.close()


def bench_banish(banish: Banish, ips: list[str], tmp: Path, via: str,
                 banaction: str) -> tuple[Row, str]:
    with netns("banish") as ns:
        daemon = BanishDaemon(banish, ns, tmp / "banish", banaction)
        try:
            if via == "cli" or (via == "auto" and daemon.has_ban_verb()):
                how = "`banish ban bench -` (stdin)"
                seconds = daemon.ban_stdin(ips)
            else:
                how = "a log of 3 failures per address" + (
                    " (this banish has no `ban` verb yet)" if via == "auto" else "")
                seconds = daemon.ban_by_log(ips)
            held = ns.set_sizes("banish", [f"{JAIL}-v4", f"{JAIL}-v6"])
            if banaction == "nftables" and held != len(ips):
                raise RuntimeError(f"the kernel holds {held} of {len(ips)} banish bans")
        finally:
            daemon.stop()
    return Row(f"banish daemon -> {banaction}", len(ips), seconds, how), how


# --- fail2ban --------------------------------------------------------------------------------


_F2B_LINKS = ("action.d", "filter.d", "fail2ban.conf", "paths-common.conf", "paths-debian.conf")


def bench_fail2ban(ips: list[str], tmp: Path) -> Row:
    """fail2ban-server with its nftables action, in a namespace; ``banip`` of ``ips``."""
    conf = tmp / "f2b"
    conf.mkdir()
    for name in _F2B_LINKS:
        (conf / name).symlink_to(Path("/etc/fail2ban") / name)
    sock = conf / "f2b.sock"
    (conf / "fail2ban.local").write_text(
        f"[Definition]\nloglevel = INFO\nlogtarget = {conf / 'f2b.log'}\nsocket = {sock}\n"
        f"pidfile = {conf / 'f2b.pid'}\ndbfile = {conf / 'f2b.sqlite3'}\n")
    (conf / "empty.log").touch()
    (conf / "jail.conf").write_text(
        "[INCLUDES]\nbefore = paths-debian.conf\n\n[DEFAULT]\nignoreself = false\n\n"
        f"[{JAIL}]\nenabled = true\nfilter = sshd\nbackend = polling\n"
        f"logpath = {conf / 'empty.log'}\nmaxretry = 3\nfindtime = 1h\nbantime = 1d\n"
        f"action = nftables[name={JAIL}, port=ssh, protocol=tcp]\n")
    sets = [f"addr-set-{JAIL}", f"addr6-set-{JAIL}"]
    client = ["fail2ban-client", "-c", str(conf), "-s", str(sock)]
    with netns("fail2ban") as ns:
        ns.run(*client, "-x", "start", timeout=120)
        try:
            # Warm up: the first ban of each family runs the action's start (table, set, rule).
            warm = ["192.0.2.1", "2001:db8::1"]
            ns.run(*client, "set", JAIL, "banip", *warm)
            wait(lambda: ns.set_sizes("f2b-table", sets) == len(warm), 120,
                 "fail2ban's first bans", interval=0.1)
            start = time.perf_counter()
            ns.run(*client, "set", JAIL, "banip", *ips, timeout=3600)
            wait(lambda: ns.set_sizes("f2b-table", sets) >= len(warm) + len(ips), 3600,
                 f"{len(ips)} fail2ban bans in the kernel", interval=0.2)
            seconds = time.perf_counter() - start
        finally:
            subprocess.run(ns.argv(*client, "stop"), capture_output=True, timeout=300)
    return Row("fail2ban banip -> nftables action", len(ips), seconds,
               "one shell + nft process per ban; measured")


# --- raw nft ---------------------------------------------------------------------------------


_NFT_LOOP = r"""
import subprocess, sys, time
ips = sys.stdin.read().split()
start = time.perf_counter()
for ip in ips:
    kind = "v6" if ":" in ip else "v4"
    subprocess.run(["nft", "add", "element", "inet", "raw", kind, "{ %s }" % ip], check=True)
print(time.perf_counter() - start)
"""

_RAW_TABLE = ("add table inet raw\n"
              "add set inet raw v4 { type ipv4_addr; flags timeout; }\n"
              "add set inet raw v6 { type ipv6_addr; flags timeout; }\n")


def bench_raw_nft(ips: list[str], per_process: int) -> list[Row]:
    rows = []
    with netns("nft") as ns:
        ns.run("nft", "-f", "-", stdin=_RAW_TABLE)
        sample = ips[:per_process]
        seconds = float(ns.run(sys.executable, "-c", _NFT_LOOP, stdin="\n".join(sample)))
        rows.append(Row("one `nft add element` process per ban", len(sample), seconds,
                        "measured; no fail2ban overhead"))
        ns.run("nft", "flush", "set", "inet", "raw", "v4")
        ns.run("nft", "flush", "set", "inet", "raw", "v6")
        v4 = [ip for ip in ips if ":" not in ip]
        v6 = [ip for ip in ips if ":" in ip]
        batch = "".join(f"add element inet raw {name} {{ {', '.join(part)} }}\n"
                        for name, part in (("v4", v4), ("v6", v6)) if part)
        start = time.perf_counter()
        ns.run("nft", "-f", "-", stdin=batch)
        rows.append(Row("one `nft -f` transaction (kernel floor)", len(ips),
                        time.perf_counter() - start, "measured"))
    return rows


# --- report ----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = ("what", "bans", "seconds", "bans/s", "how")
    body = [(r.what, f"{r.bans:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}", r.note) for r in rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    rows_md = ["| " + " | ".join(c.rjust(w) if 0 < i < 4 else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(b, widths, strict=True))) + " |"
               for b in body]
    return "\n".join([line, rule, *rows_md])


def machine_info(banish: Banish) -> dict[str, str]:
    rev = machine.first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return {
        "CPU": machine.cpu_model(),
        "cores": machine.cores(),
        "RAM": machine.memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "nft": machine.first_line(["nft", "--version"]),
        "fail2ban": machine.first_line(["fail2ban-client", "--version"]),
        "banish": machine.first_line([*banish.argv, "--version"], banish.env) + f" via {banish.how}",
        "banish commit": rev if rev != "unknown" else "no commit yet",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="bans through banish")
    ap.add_argument("--v6-share", type=float, default=0.3, help="share of IPv6 addresses")
    ap.add_argument("--seed", type=int, default=20240123)
    ap.add_argument("--f2b-count", type=int, default=1000,
                    help="bans through fail2ban (0: skip fail2ban)")
    ap.add_argument("--nft-count", type=int, default=200,
                    help="single `nft add element` processes (0: skip raw nft)")
    ap.add_argument("--via", choices=("auto", "cli", "log"), default="auto",
                    help="drive banish with `banish ban JAIL -` (cli) or a log of failures "
                         "(log); auto: cli if this banish has the verb")
    ap.add_argument("--banaction", choices=("nftables", "null"), default="nftables",
                    help="banish's firewall backend (null: the daemon's own cost alone)")
    ap.add_argument("--banish", metavar="CMD", help="how to run banish (default: found)")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    ap.add_argument("--note", help="a remark recorded with the results")
    a = ap.parse_args(argv)
    # SIGTERM (timeout, kill) unwinds like an exception, so the namespaces are deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces, nftables)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            ap.error(f"'{tool}' is not installed")
    banish = find_banish(a.banish)
    if banish is None:
        ap.error("banish not found (bash scripts/run --version installs it, or --banish CMD)")
    f2b = a.f2b_count > 0 and shutil.which("fail2ban-client") is not None
    if a.f2b_count > 0 and not f2b:
        print("fail2ban-client not found: skipping fail2ban", file=sys.stderr)

    ips = addresses(a.count, a.v6_share, a.seed)
    load = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="banish-bench-") as tmp:
        row, how = bench_banish(banish, ips, Path(tmp), a.via, a.banaction)
        rows.append(row)
        print(f"banish: {row.seconds:.2f} s for {row.bans:,} bans via {how}", file=sys.stderr)
        if f2b:
            sample = addresses(a.f2b_count, a.v6_share, a.seed + 1)
            f2b_row = bench_fail2ban(sample, Path(tmp))
            rows += [f2b_row, extrapolated(f2b_row, a.count)]
            print(f"fail2ban: {f2b_row.seconds:.2f} s for {f2b_row.bans:,} bans", file=sys.stderr)
        if a.nft_count > 0:
            raw = bench_raw_nft(ips, a.nft_count)
            rows += [raw[0], extrapolated(raw[0], a.count), raw[1]]
    text = table(rows)
    print(text)
    if a.record:
        machine.append_section(RESULTS, SECTION, [
            *(f"{k}: {v}" for k, v in machine_info(banish).items()),
            f"command: `python3 bench/bans.py {shlex.join(argv or sys.argv[1:])}`",
            f"data: {a.count:,} distinct addresses ({a.v6_share:.0%} IPv6), seed {a.seed}; wall "
            "clock until the kernel holds the bans; every firewall in its own network namespace",
            f"banish was driven by {how}",
            *([f"note: {a.note}"] if a.note else [])], load, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
