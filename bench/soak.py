#!/usr/bin/env python3
"""A soak: the real daemon under minutes of mixed load, its memory and CPU sampled every 10 s.

Owns: the soak run and the dated "soak" sections appended to bench/RESULTS.md with --record.

Why: the other benchmarks time one thing once; a daemon that runs for months must also not
grow, leak descriptors, fall behind its log or drift from the kernel while everything happens
at once. This runs ``banish run`` (nftables backend, ``BANISH_NETNS`` into a namespace this
script creates and deletes, ``banish-bench-soak-*``) with its own temporary config: banish's
own sshd filter (copied from src/banish/filters/filter.d) on a generated auth.log, three jails

- ``sshd``       maxretry 5, findtime 1m, bantime 1h (bans accumulate);
- ``sshd-fast``  the same log, maxretry 3, findtime 30s, bantime 45s (bans expire all the
                 time; maxretry flips between 3 and 4 at every other reload, so reloads really
                 rebuild it);
- ``blocklist``  fed only by ``banish ban blocklist -`` (bantime 150s: bulk expiries);

The failure windows are short on purpose: the addresses a jail tracks (most seen once, kept for
findtime) fill the window within the first minute, so "final RSS vs RSS after the first minute"
compares two steady states and growth means something kept that should not be (with findtime
10m the window alone grows the daemon by ~25 MB over ten minutes at this rate). The number of
tracked addresses is sampled too.

and, for ``--minutes`` (default 10), drives:

- log lines appended at a steady ``--rate`` (default 200/s) by a thread: 60 % noise (logins,
  sessions, cron, sudo), 35 % failures from a large pool of addresses each seen once or twice
  (below maxretry), 5 % from a rotating set of attackers each failing 6-10 times (banned);
- every minute a bulk ``banish ban blocklist -`` of ``--bulk`` (default 3000) fresh addresses
  (30 % IPv6) and, 20 s later, ``unban`` of a tenth of them (stdin) plus a few sshd bans;
- ``reload`` every two minutes; ``banned --json`` (everything, and one address) every 30 s;
- ``status --json`` with every sample.

Sampled every 10 s: the daemon's VmRSS (/proc/PID/status), its CPU and its waited-for children's
(nft) since the last sample (/proc/PID/stat), open descriptors, threads, active bans, the size
of auth.log and of banish's own log, and how far the daemon's saved read position trails the
end of auth.log. At the end the writer stops, the daemon must catch up with the log, still be
alive, and the kernel's sets must hold exactly what ``banned`` reports (bans ending within a
few seconds either way are left out: the kernel and the daemon each expire them on their own
clock). Then SIGTERM, and the table must be gone. Exit status 1 if any check fails.

Addresses are made up (100.64.0.0/10, 198.18.0.0/15, 2001:db8::/32) and only ever text in a log
or set elements inside the namespace; no packet is sent. Must not: touch the host's firewall,
or edit any section of RESULTS.md but append its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import random
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bans import Netns, machine_info, netns, wait  # bench/bans.py
from run_regex import REPO, RESULTS, Banish, find_banish

SECTION = "soak (bench/soak.py)"
FILTERS = REPO / "src" / "banish" / "filters" / "filter.d"
SAMPLE_EVERY = 10.0
BULK_EVERY, BULK_AT = 60.0, 5.0
UNBAN_EVERY, UNBAN_AT = 60.0, 25.0
RELOAD_EVERY, RELOAD_AT = 120.0, 40.0
BANNED_EVERY, BANNED_AT = 30.0, 15.0
EDGE = 5.0
"""Seconds around a ban's end within which the kernel and `banned` may disagree at the check."""
_SET = re.compile(r"^(?P<jail>.+)-v[46](?:-\d+)?$")

JAILS = """[DEFAULT]
action = nftables
port = ssh
protocol = tcp
ignoreself = true

[sshd]
enabled = true
filter = sshd
logpath = {auth}
maxretry = 5
findtime = 1m
bantime = 1h

[sshd-fast]
enabled = true
filter = sshd
logpath = {auth}
maxretry = {fast_maxretry}
findtime = 30s
bantime = 45s

[blocklist]
enabled = true
filter = sshd
logpath = {blocklist}
bantime = 150s
"""


# --- the log writer --------------------------------------------------------------------------


_USERS = ("root", "admin", "test", "oracle", "ubuntu", "git", "postgres", "user", "pi", "guest")
_STAFF = ("alice", "bob", "carol", "deploy")


class LogWriter(threading.Thread):
    """Appends auth.log lines at a steady rate, catching up by the clock (not by sleeps)."""

    def __init__(self, path: Path, rate: float, seed: int) -> None:
        super().__init__(name="soak-writer", daemon=True)
        self.path, self.rate = path, rate
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.written = self.failures = self.attack = 0
        self.pid = 10_000
        self.session = 1
        self.attackers: list[list[Any]] = [self._attacker() for _ in range(16)]

    def _v4(self, base: str, bits: int) -> str:
        net = ipaddress.IPv4Network(base)
        return str(net.network_address + self.rng.getrandbits(bits))

    def _v6(self, base: str) -> str:
        net = ipaddress.IPv6Network(base)
        return str(net.network_address + self.rng.getrandbits(32))

    def _attacker(self) -> list[Any]:
        ip = self._v6("2001:db8:a::/48") if self.rng.random() < 0.3 else \
            self._v4("100.96.0.0/12", 20)
        return [ip, self.rng.randint(6, 10)]

    def _prefix(self, now: float, program: str) -> str:
        t = time.localtime(now)
        return f"{time.strftime('%b', t)} {t.tm_mday:>2} {time.strftime('%H:%M:%S', t)} soak {program}"

    def line(self, now: float) -> str:
        rng = self.rng
        self.pid += 1
        sshd = self._prefix(now, f"sshd[{self.pid}]:")
        port = rng.randint(1024, 65535)
        roll = rng.random()
        if roll < 0.05:
            self.attack += 1
            self.failures += 1
            slot = rng.randrange(len(self.attackers))
            ip, left = self.attackers[slot]
            self.attackers[slot] = self._attacker() if left <= 1 else [ip, left - 1]
            return f"{sshd} Failed password for root from {ip} port {port} ssh2"
        if roll < 0.40:
            self.failures += 1
            ip = self._v6("2001:db8:b::/48") if rng.random() < 0.2 else \
                self._v4("100.64.0.0/12", 20)
            user = rng.choice(_USERS)
            return rng.choice((
                f"{sshd} Failed password for invalid user {user} from {ip} port {port} ssh2",
                f"{sshd} Invalid user {user} from {ip} port {port}",
                f"{sshd} Failed password for root from {ip} port {port} ssh2"))
        user = rng.choice(_STAFF)
        client = self._v4("100.127.0.0/16", 16)
        kind = rng.randrange(6)
        if kind == 0:
            key = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                          for _ in range(43))
            return (f"{sshd} Accepted publickey for {user} from {client} port {port} ssh2: "
                    f"ED25519 SHA256:{key}")
        if kind == 1:
            return f"{sshd} pam_unix(sshd:session): session opened for user {user}(uid=1000) by (uid=0)"
        if kind == 2:
            return f"{sshd} Received disconnect from {client} port {port}:11: disconnected by user"
        if kind == 3:
            self.session += 1
            return f"{self._prefix(now, 'systemd-logind[412]:')} New session {self.session} of user {user}."
        if kind == 4:
            return (f"{self._prefix(now, f'CRON[{self.pid}]:')} pam_unix(cron:session): session "
                    "opened for user root(uid=0) by (uid=0)")
        return (f"{self._prefix(now, 'sudo:')}  {user} : TTY=pts/0 ; PWD=/home/{user} ; "
                "USER=root ; COMMAND=/usr/bin/systemctl status nginx")

    def run(self) -> None:
        start = time.monotonic()
        with open(self.path, "a", encoding="ascii") as fh:
            while not self.stop_event.is_set():
                due = int((time.monotonic() - start) * self.rate) - self.written
                if due > 0:
                    now = time.time()
                    fh.write("".join(self.line(now) + "\n" for _ in range(due)))
                    fh.flush()
                    self.written += due
                self.stop_event.wait(0.05)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


# --- the daemon ------------------------------------------------------------------------------


class Daemon:
    """``banish run`` on the soak config, its firewall inside ``ns``; the CLI against it."""

    def __init__(self, banish: Banish, ns: Netns, root: Path) -> None:
        self.banish, self.ns, self.root = banish, ns, root
        self.cfg = root / "cfg"
        (self.cfg / "filter.d").mkdir(parents=True)
        for name in ("sshd.conf", "common.conf"):
            shutil.copy(FILTERS / name, self.cfg / "filter.d" / name)
        self.auth = root / "auth.log"
        self.blocklist = root / "blocklist.log"
        self.auth.touch()
        self.blocklist.touch()
        self.fast_maxretry = 3
        self.write_jails()
        self.socket = root / "banish.sock"
        self.log = root / "banish.log"
        self.db = root / "banish.sqlite3"
        (self.cfg / "banish.conf").write_text(
            f"[Definition]\nsocket = {self.socket}\npidfile = {root / 'banish.pid'}\n"
            f"dbfile = {self.db}\nlogtarget = {self.log}\nloglevel = INFO\n")
        self.env = dict(banish.env or os.environ, BANISH_NETNS=ns.name)
        self.stderr = open(root / "stderr.txt", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*banish.argv, "run", "--config", str(self.cfg)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=self.stderr)
        wait(lambda: "banish is ready" in self.log_text() or self.proc.poll() is not None,
             60, "banish to start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"banish run failed: {(root / 'stderr.txt').read_text()[-2000:]}")

    def write_jails(self) -> None:
        (self.cfg / "jail.conf").write_text(JAILS.format(
            auth=self.auth, blocklist=self.blocklist, fast_maxretry=self.fast_maxretry))

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, verb: str, *args: str, stdin: str | None = None) -> tuple[Any, float]:
        """One CLI verb with --json: (its answer, seconds it took)."""
        argv = [*self.banish.argv, verb, "--socket", str(self.socket), "--json", *args]
        start = time.perf_counter()
        done = subprocess.run(argv, input=stdin, env=self.env, capture_output=True, text=True,
                              timeout=600)
        seconds = time.perf_counter() - start
        if done.returncode != 0 and not (verb == "banned" and args and not done.stderr.strip()):
            # (exit 1 and nothing said: `banned IP` found nothing)
            raise RuntimeError(f"banish {verb} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-500:]}")
        return (json.loads(done.stdout) if done.stdout.strip() else None), seconds

    def read_position(self) -> int:
        """Where the daemon's saved read position in auth.log is (-1: none yet)."""
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as con:
                row = con.execute("SELECT max(offset) FROM file_positions WHERE path = ?",
                                  (str(self.auth),)).fetchone()
        except sqlite3.Error:
            return -1
        return int(row[0]) if row and row[0] is not None else -1

    def stop(self) -> tuple[float, int | None]:
        """SIGTERM; (seconds until it exited, its exit status)."""
        start = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.close()
        return time.perf_counter() - start, self.proc.returncode


def kernel_bans(ns: Netns) -> dict[tuple[str, str], float | None] | None:
    """(jail, address) -> seconds left (None: permanent) in the ban sets; None: no table."""
    done = subprocess.run(ns.argv("nft", "-j", "list", "table", "inet", "banish"),
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return None
    found: dict[tuple[str, str], float | None] = {}
    for obj in json.loads(done.stdout)["nftables"]:
        s = obj.get("set")
        m = _SET.match(s["name"]) if s else None
        if s is None or m is None:
            continue
        for elem in s.get("elem", []):
            left: float | None = None
            if isinstance(elem, dict) and "elem" in elem:
                left = elem["elem"].get("expires")
                elem = elem["elem"]["val"]
            if isinstance(elem, dict) and "prefix" in elem:
                elem = f"{elem['prefix']['addr']}/{elem['prefix']['len']}"
            found[(m["jail"], str(elem))] = left
    return found


# --- samples ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    t: float
    rss_kb: int
    hwm_kb: int
    cpu: float
    """Percent of one core used by the daemon since the previous sample."""
    child_cpu: float
    """The same for its waited-for children (nft processes)."""
    fds: int
    threads: int
    active: int
    tracked: int
    """Addresses with failures in a window (``currently_failed``, summed over the jails)."""
    auth_bytes: int
    log_bytes: int
    written: int
    lag_bytes: int
    status_s: float


@dataclass
class Tally:
    unbanned: dict[str, int] = field(default_factory=dict)
    bulk_s: list[float] = field(default_factory=list)
    bulk_banned: int = 0
    reload_s: list[float] = field(default_factory=list)
    unban_s: list[float] = field(default_factory=list)
    banned_s: list[float] = field(default_factory=list)
    lookup_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(own utime + stime, waited-for children's cutime + cstime) in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


class Sampler:
    def __init__(self, daemon: Daemon, writer: LogWriter, start: float) -> None:
        self.daemon, self.writer, self.start = daemon, writer, start
        self.samples: list[Sample] = []
        self.last = (time.monotonic(), *cpu_ticks(daemon.proc.pid))
        self.status: dict[str, Any] = {}
        self.hz = os.sysconf("SC_CLK_TCK")

    def take(self) -> Sample:
        d = self.daemon
        pid = d.proc.pid
        now = time.monotonic()
        own, children = cpu_ticks(pid)
        then, own0, children0 = self.last
        span = max(now - then, 1e-6)
        self.last = (now, own, children)
        st = proc_status(pid)
        status, status_s = d.cli("status")
        self.status = status
        size = d.auth.stat().st_size
        position = d.read_position()
        sample = Sample(
            t=now - self.start, rss_kb=st["VmRSS"], hwm_kb=st["VmHWM"],
            cpu=100 * (own - own0) / self.hz / span,
            child_cpu=100 * (children - children0) / self.hz / span,
            fds=len(os.listdir(f"/proc/{pid}/fd")), threads=st["Threads"],
            active=sum(j["currently_banned"] for j in status["summary"]),
            tracked=sum(j["currently_failed"] for j in status["summary"]),
            auth_bytes=size, log_bytes=d.log.stat().st_size, written=self.writer.written,
            lag_bytes=size - position if position >= 0 else size, status_s=status_s)
        self.samples.append(sample)
        print(f"{sample.t:6.0f}s rss {sample.rss_kb / 1024:6.1f} MB  cpu {sample.cpu:5.1f}% "
              f"+{sample.child_cpu:4.1f}%  bans {sample.active:6d}  tracked {sample.tracked:6d}  fds {sample.fds:3d}  "
              f"lines {sample.written:8d}  lag {sample.lag_bytes / 1024:7.1f} KB  "
              f"status {status_s:.2f}s", file=sys.stderr, flush=True)
        return sample


# --- the load --------------------------------------------------------------------------------


class Load:
    """The CLI side of the load: bulk bans, unbans, reloads, queries."""

    def __init__(self, daemon: Daemon, tally: Tally, seed: int, bulk: int) -> None:
        self.d, self.tally, self.bulk = daemon, tally, bulk
        self.rng = random.Random(seed + 1)
        self.bulk_pool = self.rng.sample(range(1 << 17), 1 << 17)  # 198.18.0.0/15, no repeats
        self.last_bulk: list[str] = []
        self.reloads = 0
        self.sshd_seen: list[str] = []

    def _bulk_addresses(self) -> list[str]:
        n6 = round(self.bulk * 0.3)
        v4 = [str(ipaddress.IPv4Address((198 << 24 | 18 << 16) + self.bulk_pool.pop()))
              for _ in range(self.bulk - n6)]
        v6 = [str(ipaddress.IPv6Address((0x20010DB8FF << 88) | self.rng.getrandbits(64)))
              for _ in range(n6)]
        return v4 + v6

    def bulk_ban(self) -> None:
        ips = self._bulk_addresses()
        answer, seconds = self.d.cli("ban", "blocklist", "-", stdin="\n".join(ips) + "\n")
        self.tally.bulk_s.append(seconds)
        self.tally.bulk_banned += answer["banned"]
        self.last_bulk = ips
        print(f"bulk ban: {answer['banned']} in {seconds:.2f} s", file=sys.stderr)

    def unban(self) -> None:
        some = self.rng.sample(self.last_bulk, len(self.last_bulk) // 10) if self.last_bulk else []
        if some:
            answer, seconds = self.d.cli("unban", "blocklist", "-",
                                         stdin="\n".join(some) + "\n")
            self.tally.unban_s.append(seconds)
            self._count("blocklist", answer["unbanned"])
        if self.sshd_seen:
            picks = self.rng.sample(self.sshd_seen, min(5, len(self.sshd_seen)))
            answer, _ = self.d.cli("unban", "sshd", *picks)
            self._count("sshd", answer["unbanned"])
            self.sshd_seen = [ip for ip in self.sshd_seen if ip not in picks]

    def _count(self, jail: str, n: int) -> None:
        self.tally.unbanned[jail] = self.tally.unbanned.get(jail, 0) + n

    def reload(self) -> None:
        self.reloads += 1
        if self.reloads % 2 == 0:  # every other reload changes sshd-fast: it is rebuilt
            self.d.fast_maxretry = 7 - self.d.fast_maxretry  # 3 <-> 4
            self.d.write_jails()
        _, seconds = self.d.cli("reload")
        self.tally.reload_s.append(seconds)

    def query(self) -> None:
        rows, seconds = self.d.cli("banned")
        self.tally.banned_s.append(seconds)
        self.sshd_seen = [r["ip"] for r in rows if r["jail"] == "sshd"]
        if rows:
            _, seconds = self.d.cli("banned", self.rng.choice(rows)["ip"])
            self.tally.lookup_s.append(seconds)


# --- checks and report -----------------------------------------------------------------------


def compare(d: Daemon) -> tuple[bool, str]:
    """Do the kernel's sets hold what `banned` reports? Retried for a few seconds, since both
    sides expire bans on their own clocks; bans ending within EDGE s are left out."""
    deadline = time.monotonic() + 15
    while True:
        rows, _ = d.cli("banned")
        now = time.time()
        kernel = kernel_bans(d.ns) or {}
        wanted = {(r["jail"], r["ip"]) for r in rows
                  if r["expires_at"] is None or r["expires_at"] - now > EDGE}
        edge = {(r["jail"], r["ip"]) for r in rows} - wanted
        held = {k for k, left in kernel.items() if left is None or left > EDGE} - edge
        missing, extra = wanted - held, held - {(r["jail"], r["ip"]) for r in rows}
        if not missing and not extra:
            return True, (f"yes: {len(wanted):,} bans in both ({len(rows) - len(wanted)} ending "
                          f"within {EDGE:g} s left out)")
        if time.monotonic() > deadline:
            return False, (f"NO: {len(missing)} reported but not in the kernel (e.g. "
                           f"{sorted(missing)[:3]}), {len(extra)} in the kernel but not reported "
                           f"(e.g. {sorted(extra)[:3]})")
        time.sleep(1)


def lines_upto(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        return fh.read(max(offset, 0)).count(b"\n")


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def span(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s ({len(values)})"


def summary(rows: list[tuple[str, str]]) -> str:
    out = ["| figure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out)


def minute_table(samples: list[Sample]) -> str:
    """One row per minute, the baseline before the load and the final sample ("end", after
    the daemon caught up with the log): RSS over time."""
    head = ("t", "RSS MB", "daemon CPU %", "nft CPU %", "active bans", "tracked", "auth.log MB",
            "banish.log MB", "lines written", "read lag KB", "fds", "threads")
    picked: list[Sample] = []
    for s in samples:
        if not picked or s is samples[-1] or int(s.t // 60) > int(picked[-1].t // 60):
            picked.append(s)
    out = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for i, s in enumerate(picked):
        prev = picked[i - 1] if i else None
        # CPU over the rows' interval: the samples in it, weighted equally (10 s each).
        inside = [x for x in samples if prev is not None and prev.t < x.t <= s.t] or [s]
        cpu = statistics.fmean(x.cpu for x in inside)
        child = statistics.fmean(x.child_cpu for x in inside)
        label = f"end ({s.t / 60:.1f} min)" if s is samples[-1] else f"{s.t / 60:.1f} min"
        out.append(f"| {label} | {mb(s.rss_kb)} | {cpu:.1f} | {child:.1f} | "
                   f"{s.active:,} | {s.tracked:,} | {s.auth_bytes / 2**20:.1f} | {s.log_bytes / 2**20:.1f} | "
                   f"{s.written:,} | {s.lag_bytes / 1024:.1f} | {s.fds} | {s.threads} |")
    return "\n".join(out)


def run(a: argparse.Namespace, banish: Banish) -> tuple[list[tuple[str, str]], str, bool]:
    tally = Tally()
    with netns("soak") as ns, tempfile.TemporaryDirectory(prefix="banish-soak-") as tmp:
        d = Daemon(banish, ns, Path(tmp))
        writer = LogWriter(d.auth, a.rate, a.seed)
        finished = False
        try:
            start = time.monotonic()
            sampler = Sampler(d, writer, start)
            sampler.take()  # the baseline, before any load
            load = Load(d, tally, a.seed, a.bulk)
            writer.start()
            jobs = {"sample": SAMPLE_EVERY, "bulk": BULK_AT, "unban": UNBAN_AT,
                    "reload": RELOAD_AT, "banned": BANNED_AT}
            every = {"sample": SAMPLE_EVERY, "bulk": BULK_EVERY, "unban": UNBAN_EVERY,
                     "reload": RELOAD_EVERY, "banned": BANNED_EVERY}
            actions = {"sample": sampler.take, "bulk": load.bulk_ban, "unban": load.unban,
                       "reload": load.reload, "banned": load.query}
            end = a.minutes * 60
            while True:
                name = min(jobs, key=lambda n: jobs[n])
                at = jobs[name]
                if at > end:
                    break
                delay = start + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if d.proc.poll() is not None:
                    raise RuntimeError(f"banish died (exit {d.proc.returncode}): "
                                       f"{(Path(tmp) / 'stderr.txt').read_text()[-2000:]}")
                try:
                    actions[name]()
                except (RuntimeError, subprocess.TimeoutExpired, KeyError, TypeError) as exc:
                    tally.errors.append(f"{name} at {at:.0f} s: {exc}")
                    print(f"error: {tally.errors[-1]}", file=sys.stderr)
                jobs[name] = at + every[name]
            writer.stop()
            catch_up = time.monotonic()
            size = d.auth.stat().st_size
            wait(lambda: d.read_position() >= size or d.proc.poll() is not None, 120,
                 "the daemon to read the whole log")
            caught_up_s = time.monotonic() - catch_up
            final = sampler.take()
            alive = d.proc.poll() is None
            matches, match_text = compare(d) if alive else (False, "daemon dead")
            status = sampler.status
            position = d.read_position()
            read_lines = lines_upto(d.auth, position)
            problems = [status.get("failed_bans"), status.get("firewall_errors")]
            log_text = d.log_text()
            finished = True
        finally:
            writer.stop()
            stop_s, code = d.stop()
            if not finished or tally.errors:  # the daemon's own account, for the post-mortem
                kept = Path(tempfile.gettempdir()) / f"banish-soak-{os.getpid()}.log"
                shutil.copy(d.log, kept)
                print(f"banish's log kept in {kept}", file=sys.stderr)
        table_left = kernel_bans(ns) is not None
    samples = sampler.samples
    after_first = next((s for s in samples if s.t >= 60), samples[-1])
    peak = max(samples, key=lambda s: s.rss_kb)
    growth = final.rss_kb - after_first.rss_kb
    half = next((s for s in samples if s.t >= samples[-1].t / 2), samples[-1])
    per_jail = {j["jail"]: j for j in status["summary"]}
    made = sum(j["total_banned"] for j in per_jail.values())
    active = sum(j["currently_banned"] for j in per_jail.values())
    unbanned = sum(tally.unbanned.values())
    expired = made - active - unbanned
    ok = alive and matches and code == 0 and not table_left and not tally.errors
    errors_logged = sum(1 for line in log_text.splitlines() if " ERROR " in line)
    rows = [
        ("duration", f"{a.minutes} min of load ({samples[-1].t:.0f} s incl. the final catch-up)"),
        ("lines written / read by the daemon",
         f"{writer.written:,} / {read_lines:,} ({writer.failures:,} failures, "
         f"{writer.attack:,} of them from attackers over maxretry; {a.rate:g} lines/s)"),
        ("catch-up after the writer stopped", f"{caught_up_s:.2f} s"),
        ("failures counted per jail", ", ".join(
            f"{n} {j['total_failed']:,}" for n, j in sorted(per_jail.items()))),
        ("bans made per jail", ", ".join(
            f"{n} {j['total_banned']:,}" for n, j in sorted(per_jail.items()))),
        ("bans made / expired / unbanned by hand / active at the end",
         f"{made:,} / {expired:,} / {unbanned:,} / {active:,}"),
        ("RSS after the first minute", f"{mb(after_first.rss_kb)} MB (t = {after_first.t:.0f} s)"),
        ("final RSS", f"{mb(final.rss_kb)} MB"),
        ("growth (final - after the first minute)",
         f"{growth / 1024:+.1f} MB ({100 * growth / max(after_first.rss_kb, 1):+.1f} %)"),
        ("growth over the second half",
         f"{(final.rss_kb - half.rss_kb) / 1024:+.1f} MB (from t = {half.t:.0f} s)"),
        ("peak RSS (sampled / VmHWM)",
         f"{mb(peak.rss_kb)} MB at t = {peak.t:.0f} s / {mb(final.hwm_kb)} MB"),
        ("daemon CPU, mean over the run", f"{statistics.fmean(s.cpu for s in samples[1:]):.1f} % "
         f"of one core (+ {statistics.fmean(s.child_cpu for s in samples[1:]):.1f} % in nft)"),
        ("open fds / threads, first -> last",
         f"{samples[0].fds} -> {final.fds} / {samples[0].threads} -> {final.threads}"),
        ("banish.log at the end", f"{final.log_bytes / 2**20:.1f} MB ({errors_logged} ERROR lines)"),
        (f"bulk `ban blocklist -` of {a.bulk:,}", span(tally.bulk_s)),
        (f"`unban blocklist -` of {a.bulk // 10:,}", span(tally.unban_s)),
        ("`reload`", span(tally.reload_s)),
        ("`status --json` (with every sample)", span([s.status_s for s in samples])),
        ("`banned --json` (all) / `banned IP`",
         f"{span(tally.banned_s)} / {span(tally.lookup_s)}"),
        ("failed bans / firewall errors at the end", f"{problems[0]} / {problems[1] or 'none'}"),
        ("daemon alive at the end", "yes" if alive else "NO"),
        ("kernel sets == `banned`", match_text),
        ("SIGTERM -> exit", f"{stop_s:.2f} s, status {code}; table "
         f"{'LEFT BEHIND' if table_left else 'removed'}"),
    ]
    if tally.errors:
        rows.append(("errors during the load", "; ".join(tally.errors)[:1000]))
    return rows, minute_table(samples), ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10, help="minutes of load (default 10)")
    ap.add_argument("--rate", type=float, default=200, help="auth.log lines per second")
    ap.add_argument("--bulk", type=int, default=3000, help="addresses per bulk ban (a minute)")
    ap.add_argument("--seed", type=int, default=20240123)
    ap.add_argument("--banish", metavar="CMD", help="how to run banish (default: found)")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    ap.add_argument("--note", help="a remark recorded with the results")
    a = ap.parse_args(argv)
    # SIGTERM (timeout, kill) unwinds like an exception, so the namespace is deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces, nftables)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            ap.error(f"'{tool}' is not installed")
    banish = find_banish(a.banish)
    if banish is None:
        ap.error("banish not found (bash scripts/run --version installs it, or --banish CMD)")
    load = os.getloadavg()
    rows, minutes, ok = run(a, banish)
    text = summary(rows) + "\n\nRSS over time (one row a minute; CPU is the mean since the " \
        "previous row):\n\n" + minutes
    print(text)
    if a.record:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        info = machine_info(banish)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=False).stdout.strip()
        if dirty and info["banish commit"] != "no commit yet":
            info["banish commit"] += " + uncommitted changes in src/"
        section = [f"\n## {stamp} — {SECTION}\n", *(f"- {k}: {v}" for k, v in info.items()),
                   f"- command: `python3 bench/soak.py {shlex.join(argv or sys.argv[1:])}`",
                   "- load: jails sshd (maxretry 5, findtime 1m, bantime 1h) and sshd-fast "
                   "(maxretry 3/4, findtime 30s, bantime 45s) on one auth.log, blocklist "
                   "(bantime 150s) fed by bulk bans; "
                   f"{a.rate:g} lines/s, a bulk ban of {a.bulk:,} a minute, a tenth of it "
                   "unbanned, reload every 2 min, queries every 30 s; nftables inside a "
                   "network namespace; samples every 10 s",
                   *([f"- note: {a.note}"] if a.note else []),
                   f"- load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n",
                   text, ""]
        with open(RESULTS, "a") as fh:
            fh.write("\n".join(section))
        print(f"appended to {RESULTS}", file=sys.stderr)
    if not ok:
        print("soak: a check failed (see the table)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
