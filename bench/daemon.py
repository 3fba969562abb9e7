"""Daemon benchmarks: backfill vs fail2ban, restart with many bans, memory with many addresses.

    python bench/daemon.py [--lines N] [--skip-fail2ban] [--record]

1. Backfill: the daemon starts on an existing auth.log (bench/data/auth.log from gen_logs.py)
   whose whole content lies inside findtime, so every line must be read; measured from process
   start until the store's saved position reaches the end of the file. fail2ban-server runs the
   same jail (same filter file: fail2ban's sshd.conf, same findtime) on the same file, measured
   until ``fail2ban-client status`` stops changing and equals its final failure count.
2. Restart: 10,000 active bans already in the store; seconds from start until "ready".
3. Memory: a log where 1,000,000 distinct addresses fail once each; peak RSS of the daemon.
Both daemons use a log-only action, so only reading and deciding is measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine  # bench/machine.py (scripts run as bench/NAME.py)

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
F2B_FILTERS = "/etc/fail2ban/filter.d"


def _wait(predicate, timeout: float, step: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("benchmark condition not reached")


def _peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _banish_config(root: Path, log: Path, *, findtime: str) -> Path:
    cfg = root / "cfg"
    (cfg / "filter.d").mkdir(parents=True)
    for name in ("sshd.conf", "common.conf"):
        shutil.copy(os.path.join(F2B_FILTERS, name), cfg / "filter.d" / name)
    (cfg / "jail.conf").write_text(
        "[sshd]\nenabled = true\nfilter = sshd\naction = null\n"
        f"logpath = {log}\nmaxretry = 5\nfindtime = {findtime}\nbantime = 1h\n")
    (cfg / "banish.conf").write_text(
        f"[Definition]\nsocket = {root}/banish.sock\npidfile = {root}/banish.pid\n"
        f"dbfile = {root}/banish.sqlite3\nlogtarget = {root}/banish.log\nloglevel = NOTICE\n")
    return cfg


def _position(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            row = con.execute("select max(offset) from file_positions").fetchone()
    except sqlite3.Error:
        return -1
    return int(row[0] or -1)


def bench_banish_backfill(log: Path, findtime: str) -> dict[str, float]:
    size = log.stat().st_size
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = _banish_config(root, log, findtime=findtime)
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "banish.cli.main", "run", "--config",
                                 str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: _position(root / "banish.sqlite3") >= size, timeout=1800, step=0.05)
            seconds = time.perf_counter() - started
            rss = _peak_rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    return {"seconds": seconds, "rss_mb": rss / 1024}


def _f2b_status(sock: Path) -> int | None:
    done = subprocess.run(["fail2ban-client", "-s", str(sock), "status", "sshd"],
                          capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if "Total failed:" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def bench_fail2ban_backfill(log: Path, findtime: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree("/etc/fail2ban", root / "etc", symlinks=True)
        for d in ("jail.d",):
            shutil.rmtree(root / "etc" / d, ignore_errors=True)
            (root / "etc" / d).mkdir()
        (root / "etc" / "jail.local").write_text(
            "[DEFAULT]\nbackend = polling\nbanaction = \naction = \n"
            "[sshd]\nenabled = true\nfilter = sshd\n"
            f"logpath = {log}\nmaxretry = 5\nfindtime = {findtime}\nbantime = 1h\n")
        # fail2ban-server has no --dbfile flag: its database location comes from fail2ban.local.
        (root / "etc" / "fail2ban.local").write_text(
            f"[Definition]\ndbfile = {root / 'f2b.sqlite3'}\n")
        sock = root / "f2b.sock"
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["fail2ban-server", "-f", "-x", "-c", str(root / "etc"), "-s", str(sock),
             "-p", str(root / "f2b.pid"), "--logtarget", str(root / "f2b.log"),
             "--loglevel", "NOTICE"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: sock.exists(), 60)
            last, stable_since = None, time.perf_counter()
            while True:
                time.sleep(1)
                now_count = _f2b_status(sock)
                if now_count != last:
                    last, stable_since = now_count, time.perf_counter()
                elif now_count and time.perf_counter() - stable_since >= 5:
                    break
            seconds = stable_since - started
            rss = _peak_rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    return {"seconds": seconds, "rss_mb": rss / 1024, "failures": float(last or 0)}


def bench_restart(bans: int) -> dict[str, float]:
    from banish.store.base import Ban
    from banish.store.sqlite import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "empty.log"
        log.write_text("")
        cfg = _banish_config(root, log, findtime="10m")
        store = SqliteStore(root / "banish.sqlite3")
        now = time.time()
        rng = random.Random(7)
        store.add_bans([Ban(f"10.{rng.randrange(256)}.{i // 256 % 256}.{i % 256}", "sshd", now,
                            3600) for i in range(bans)])
        store.close()
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "banish.cli.main", "run", "--config",
                                 str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            logfile = root / "banish.log"
            _wait(lambda: logfile.exists() and "banish is ready" in logfile.read_text(), 300, 0.02)
            seconds = time.perf_counter() - started
            restored = "Restored" in logfile.read_text()
        finally:
            proc.terminate()
            proc.wait(60)
    return {"seconds": seconds, "restored": float(restored)}


def bench_memory(addresses: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "spray.log"
        stamp = time.strftime("%b %d %H:%M:%S")
        with open(log, "w") as fh:
            for i in range(addresses):
                ip = f"{10 + i // 16_777_216}.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
                fh.write(f"{stamp} host sshd[1]: Failed password for root from {ip} port 22 ssh2\n")
        result = bench_banish_backfill(log, "1d")
    return result


def machine_line() -> str:
    return (f"{machine.cpu_model()}, cores {machine.cores()}, {machine.memory()}, "
            f"Python {platform.python_version()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log", default=str(DATA / "auth.log"))
    ap.add_argument("--skip-fail2ban", action="store_true")
    ap.add_argument("--bans", type=int, default=10_000)
    ap.add_argument("--addresses", type=int, default=1_000_000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    log = Path(args.log)
    findtime = "400d"  # the generated log's dates must all count
    rows = []
    b = bench_banish_backfill(log, findtime)
    with open(log, "rb") as fh:
        lines = sum(1 for _ in fh)
    rows.append(f"| backfill {lines:,} lines (banish) | {b['seconds']:.1f} s | "
                f"{lines / b['seconds']:,.0f} lines/s | RSS {b['rss_mb']:.0f} MB |")
    if not args.skip_fail2ban:
        f = bench_fail2ban_backfill(log, findtime)
        rows.append(f"| backfill {lines:,} lines (fail2ban 1.0.2) | {f['seconds']:.1f} s | "
                    f"{lines / f['seconds']:,.0f} lines/s | RSS {f['rss_mb']:.0f} MB |")
        rows.append(f"| ratio (banish faster by) | {f['seconds'] / b['seconds']:.1f}x | | |")
    r = bench_restart(args.bans)
    rows.append(f"| restart with {args.bans:,} active bans re-applied | {r['seconds']:.2f} s "
                f"(process start to ready) | | |")
    m = bench_memory(args.addresses)
    rows.append(f"| {args.addresses:,} distinct addresses failing once | {m['seconds']:.1f} s | "
                f"| peak RSS {m['rss_mb']:.0f} MB |")
    table = "| case | time | rate | memory |\n|---|---|---|---|\n" + "\n".join(rows)
    print(table)
    if args.record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(f"\n## Daemon: backfill, restart, memory — {dt.date.today()}\n\n"
                     f"Machine: {machine_line()}. Command: `python bench/daemon.py --record`.\n\n"
                     f"{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
