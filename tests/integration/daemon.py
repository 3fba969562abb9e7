"""Run the real ``banish run`` as a subprocess against files in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from banish.daemon.runtime import own_addresses

_BAN = re.compile(r"NOTICE\s+\[(?P<jail>[^\]]+)\] (?P<what>Ban|Unban) (?P<ip>\S+)")

DEMO_FILTER = """[Definition]
failregex = ^\\s*login failed for \\S+ from <HOST>$
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll an event-driven condition with a bound; never a fixed sleep for logic."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def stamp(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if t is None else t))


class Daemon:
    """A config directory, a log directory, and the daemon process using them."""

    def __init__(self, root: Path, jails: str, *, filters: dict[str, str] | None = None) -> None:
        self.root = root
        self.cfg = root / "cfg"
        self.logs = root / "logs"
        (self.cfg / "filter.d").mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        for name, body in {"demo": DEMO_FILTER, **(filters or {})}.items():
            (self.cfg / "filter.d" / f"{name}.conf").write_text(body)
        self.write_jails(jails)
        self.socket = root / "banish.sock"
        self.db = root / "banish.sqlite3"
        self.log = root / "banish.log"
        (self.cfg / "banish.conf").write_text(
            f"[Definition]\nsocket = {self.socket}\npidfile = {root / 'banish.pid'}\n"
            f"dbfile = {self.db}\nlogtarget = {self.log}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def write_jails(self, jails: str) -> None:
        (self.cfg / "jail.conf").write_text(jails.replace("{logs}", str(self.logs)))

    def start(self, prefix: tuple[str, ...] = ()) -> None:
        """Start the daemon; ``prefix`` wraps the command (e.g. setpriv to drop capabilities)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.root / "stderr.txt", "ab") as err:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "banish.cli.main", "run", "--config",
                 str(self.cfg)], stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: "banish is ready" in self.log_text(offset) or self.proc_died(),
                 what="daemon readiness")
        assert not self.proc_died(), self.stderr()

    def proc_died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stderr(self) -> str:
        return (self.root / "stderr.txt").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(15)
        self.proc = None

    def log_text(self, offset: int = 0) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return ""

    def events(self) -> list[tuple[str, str, str]]:
        """(Ban|Unban, jail, ip) in log order."""
        return [(m["what"], m["jail"], m["ip"]) for m in _BAN.finditer(self.log_text())]

    def bans(self, what: str = "Ban") -> list[str]:
        return [ip for w, _, ip in self.events() if w == what]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "banish.cli.main", "--socket",
                               str(self.socket), *args], capture_output=True, text=True,
                              check=check, timeout=30)

    def status(self, jail: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", jail, "--json").stdout))

    def append(self, name: str, *lines: str) -> None:
        with open(self.logs / name, "a", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")

    def fail(self, name: str, ip: str, count: int = 1, user: str = "root") -> None:
        assert ip not in own_addresses(), f"{ip} is this host's address: ignoreself skips it"
        self.append(name, *(f"{stamp()} login failed for {user} from {ip}" for _ in range(count)))

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        if os.environ.get("BANISH_TEST_KEEP_LOG"):
            print(self.log_text())
