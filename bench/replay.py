"""What "no lost failure" costs: log lines/s while reading, and the start after a stop.

banish keeps failure windows across a stop or crash by replaying, at start, the lines of the
last ``findtime`` before its stored position (README "Reliability"). Nothing is written per
failure, so reading should cost the same; the price is paid at each start. This runs one or
more banish source trees side by side (``--src DIR`` each; default: this checkout's ``src``)
on the same log: (1) reading the whole log from a fresh start, measured until the stored
position reaches the end; (2) a stop and a start, measured until the failure windows are back
(the jail's "total failed" equals the first run's) -- or, for a banish without replay, until
it is ready; (3) the same start once more.

    python3 bench/replay.py --src /tmp/old/src --src src [--log bench/data/auth.log] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import machine  # noqa: E402  (bench/machine.py)

F2B_FILTERS = "/etc/fail2ban/filter.d"


def _wait(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(step)


def _position(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            row = con.execute("select max(offset) from file_positions").fetchone()
    except sqlite3.Error:
        return -1
    return int(row[0] or -1)


class Run:
    """One banish source tree on one log, in a temporary root."""

    def __init__(self, src: Path, log: Path, root: Path) -> None:
        self.src, self.log, self.root = src, log, root
        cfg = root / "cfg"
        (cfg / "filter.d").mkdir(parents=True)
        for name in ("sshd.conf", "common.conf"):
            shutil.copy(os.path.join(F2B_FILTERS, name), cfg / "filter.d" / name)
        (cfg / "jail.conf").write_text(
            "[sshd]\nenabled = true\nfilter = sshd\naction = null\n"
            f"logpath = {log}\nmaxretry = 1000000\nfindtime = 400d\nbantime = 1h\n")
        (cfg / "banish.conf").write_text(
            f"[Definition]\nsocket = {root}/s.sock\npidfile = {root}/p.pid\n"
            f"dbfile = {root}/db.sqlite3\nlogtarget = {root}/banish.log\nloglevel = NOTICE\n")
        self.env = dict(os.environ, PYTHONPATH=str(src))
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "banish.cli.main", "--socket",
                               str(self.root / "s.sock"), *args], env=self.env,
                              capture_output=True, text=True, check=False).stdout

    def total_failed(self) -> int:
        try:
            return int(json.loads(self.cli("status", "sshd", "--json"))["total_failed"])
        except (ValueError, KeyError):
            return -1

    def start(self) -> float:
        self.proc = subprocess.Popen([sys.executable, "-m", "banish.cli.main", "run",
                                      "--config", str(self.root / "cfg")], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


def measure(src: Path, log: Path) -> dict[str, float]:
    size = log.stat().st_size
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(src, log, Path(tmp))
        started = run.start()
        _wait(lambda: _position(Path(tmp) / "db.sqlite3") >= size, timeout=1800)
        read = time.perf_counter() - started
        failed = run.total_failed()
        run.stop()
        out = {"read_s": read, "failures": float(failed)}
        for key in ("restart_s", "restart2_s"):
            started = run.start()
            # Windows back (replay) -- or, without replay, the daemon answering at all.
            _wait(lambda: run.total_failed() >= failed or
                  (run.total_failed() == 0 and "replay" not in _log(Path(tmp))), timeout=1800)
            out[key] = time.perf_counter() - started
            if run.total_failed() < failed:  # no replay: check nothing more comes
                time.sleep(2)
            out[key.replace("_s", "_failed")] = float(run.total_failed())
            run.stop()
    return out


def _log(root: Path) -> str:
    try:
        return (root / "banish.log").read_text(errors="replace")
    except OSError:
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", action="append", default=[], help="a banish src/ tree (repeat)")
    ap.add_argument("--log", default=str(HERE / "data" / "auth.log"))
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    srcs = [Path(s).resolve() for s in a.src] or [HERE.parent / "src"]
    log = Path(a.log)
    with open(log, "rb") as fh:
        lines = sum(1 for _ in fh)
    rows = []
    for src in srcs:
        r = measure(src, log)
        rows.append(f"| {src} | {lines / r['read_s']:,.0f} lines/s ({r['read_s']:.1f} s) | "
                    f"{r['restart_s']:.1f} s, {r['restart_failed']:,.0f} of "
                    f"{r['failures']:,.0f} failures back | {r['restart2_s']:.1f} s, "
                    f"{r['restart2_failed']:,.0f} back |")
        print(rows[-1], flush=True)
    table = ("| banish tree | reading the whole log | start after a stop | and again |\n"
             "|---|---:|---:|---:|\n" + "\n".join(rows))
    print(table)
    if a.record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(f"\n## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — "
                     "no lost failure: reading and restart (bench/replay.py)\n\n"
                     f"- CPU: {machine.cpu_model()}; cores: {machine.cores()}; RAM: "
                     f"{machine.memory()}; kernel: {os.uname().release}\n"
                     f"- log: {log} ({lines:,} lines, all inside findtime = 400d)\n"
                     + (f"- note: {a.note}\n" if a.note else "") + "\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
