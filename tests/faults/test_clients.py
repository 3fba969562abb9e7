"""The daemon outlives its clients: clients that vanish mid-answer, half-close, are interrupted
with Ctrl-C or send garbage never stop the real daemon, and the unit restarts it if anything
else does.

A client that hangs up before reading its reply makes the daemon's next write fail with EPIPE;
with SIGPIPE at its default disposition that write killed the whole daemon (signal 13, no log
line, a stale socket left behind). The real ``banish run`` runs here with ``action = null``
(no firewall); the clients are raw sockets or the real CLI in a subprocess. Other tests keep
the CLI's own half of the bargain: verbs that print still exit quietly into ``| head``.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, wait_for

pytestmark = pytest.mark.faults

JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = null
maxretry = 1
findtime = 1h
bantime = 1h
"""

BANNED = 20_000
"""Enough bans that ``banned --json`` (about 2 MB) outgrows the socket buffers: the daemon is
still writing when the client is gone, not just about to."""

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "banish.service"
CLI = (sys.executable, "-m", "banish.cli.main")


def addresses(count: int, second: int = 18) -> list[str]:
    return [f"198.{second}.{i >> 8 & 255}.{i & 255}" for i in range(count)]


def request(cmd: str, **args: Any) -> bytes:
    return json.dumps({"v": 1, "cmd": cmd, "args": args}).encode() + b"\n"


def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # a blocking connect waits while the daemon's listen backlog is full; one with a
        # timeout would fail with EAGAIN (Unix sockets have no EINPROGRESS)
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    s.settimeout(30)
    return s


def vanish(path: Path, data: bytes, *, half_close: bool = False) -> None:
    """Send a request and go away without reading a byte of the answer."""
    with connect(path) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)


def exchange(path: Path, *lines: bytes) -> list[bytes]:
    """Raw lines on one connection; one answer line each (the connection must survive)."""
    with connect(path) as s, s.makefile("rb") as f:
        answers = []
        for line in lines:
            s.sendall(line)
            answers.append(f.readline())
        return answers


def banned(d: Daemon) -> set[str]:
    done = d.cli("banned", "--json", check=False)
    assert done.returncode == 0, f"banned: {done.stderr.strip()} (daemon: {d.stderr()[-500:]})"
    return {row["ip"] for row in json.loads(done.stdout)}


def banned_count(d: Daemon) -> int:
    """Cheaper than ``banned`` for polling: the overview's counter."""
    done = d.cli("status", "--json", check=False)
    return int(json.loads(done.stdout)["summary"][0]["currently_banned"]) if done.stdout else -1


def sigpipe_ignored(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGPIPE - 1) & 1)
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        done = subprocess.run([*CLI, "--socket", str(d.socket), "ban", "demo", "-", "--json"],
                              input="\n".join(addresses(BANNED)), capture_output=True,
                              text=True, timeout=120, check=True)
        assert json.loads(done.stdout) == {"banned": BANNED, "already": 0}
        yield d
        assert "Traceback" not in d.log_text() + d.stderr()
        d.stop()


def assert_unharmed(d: Daemon, pid: int) -> None:
    assert d.proc is not None and d.proc.poll() is None, f"daemon died: {d.stderr()[-2000:]}"
    assert d.proc.pid == pid
    assert d.cli("ping").stdout == "pong\n"
    assert banned(d) == set(addresses(BANNED))


# -- clients that go away ------------------------------------------------------------------

def test_run_ignores_sigpipe(daemon: Daemon) -> None:
    assert daemon.proc is not None
    assert sigpipe_ignored(daemon.proc.pid)


def test_a_client_gone_before_its_answer_costs_nothing(daemon: Daemon) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    vanish(daemon.socket, request("banned", ip=None, jail=None))  # 2 MB the daemon cannot send
    assert exchange(daemon.socket, request("ping")) == [b'{"ok":true,"result":"pong"}\n']
    assert_unharmed(daemon, pid)


def test_a_thousand_vanishing_clients_in_a_row_change_nothing(daemon: Daemon) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    small = [request("status", jail=None), request("status", jail="demo"),
             request("banned", ip="198.18.0.7", jail=None), request("ping"),
             request("get", jail="demo", param="maxretry")]
    started = time.monotonic()
    for i in range(1000):
        # every 100th asks for the whole 2 MB list, the rest for small answers
        data = request("banned", ip=None, jail=None) if i % 100 == 0 else small[i % len(small)]
        vanish(daemon.socket, data, half_close=i % 2 == 1)
    print(f"1000 vanishing clients: {time.monotonic() - started:.1f} s")
    assert_unharmed(daemon, pid)
    assert daemon.status("demo")["currently_banned"] == BANNED


def test_a_half_closed_client_gets_every_answer(daemon: Daemon) -> None:
    """shutdown(SHUT_WR) after the requests is "no more questions", not "gone": every answer
    is still sent, then the daemon closes its side."""
    with connect(daemon.socket) as s, s.makefile("rb") as f:
        s.sendall(request("ping") + request("banned", ip=None, jail=None) + request("ping"))
        s.shutdown(socket.SHUT_WR)
        assert f.readline() == b'{"ok":true,"result":"pong"}\n'
        rows = json.loads(f.readline())["result"]
        assert {row["ip"] for row in rows} == set(addresses(BANNED))
        assert f.readline() == b'{"ok":true,"result":"pong"}\n'
        assert f.read() == b""


def interrupted_mid_answer(d: Daemon, block: int, delay: float) -> bool:
    """Ctrl-C on `banish ban demo - < list` ``delay`` s after the CLI started waiting on its
    socket. True when that landed between sending the list and reading the answer: the CLI
    died of it (130) and the daemon still banned the whole list."""
    fresh = addresses(60_000, second=block)
    before = banned_count(d)
    client = subprocess.Popen([*CLI, "--socket", str(d.socket), "ban", "demo", "-"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
    assert client.stdin is not None
    client.stdin.write("\n".join(fresh) + "\n")
    client.stdin.close()
    # the socket has a timeout, so the CLI sleeps in poll() while it sends and waits
    wait_for(lambda: client.poll() is not None or "poll" in Path(
        f"/proc/{client.pid}/wchan").read_text(), what="the CLI on its socket")
    time.sleep(delay)
    client.send_signal(signal.SIGINT)
    if client.wait(30) != 130:
        return False
    try:
        wait_for(lambda: d.proc_died() or banned_count(d) == before + len(fresh), timeout=5,
                 what="the list banned")
    except AssertionError:
        return False
    return True


def test_ctrl_c_on_a_bulk_ban_from_stdin_leaves_the_daemon_running(daemon: Daemon) -> None:
    """The report: `banish ban sshd - < list`, Ctrl-C while the daemon works on the list (a
    60k list keeps it busy for a good part of a second; tried until a Ctrl-C lands there)."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    landed = False
    for block, delay in zip(range(19, 25), (0.2, 0.1, 0.3, 0.05, 0.4, 0.15), strict=True):
        landed = interrupted_mid_answer(daemon, block, delay)
        if landed or daemon.proc_died():
            break
    assert daemon.proc.poll() is None and daemon.proc.pid == pid, daemon.stderr()[-2000:]
    assert landed, "no Ctrl-C landed while the daemon worked on the list"
    assert daemon.cli("ping").stdout == "pong\n"
    assert set(addresses(BANNED)) <= banned(daemon)


def head_1(*argv: str) -> bytes:
    """`banish ARGV | head -1`: the first line, then the pipe closed under the CLI, which must
    end quietly (SIGPIPE at its default: no traceback, no "Broken pipe" message)."""
    reader = subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout is not None and reader.stderr is not None
    line = reader.stdout.readline()
    reader.stdout.close()
    assert reader.wait(120) in (0, -signal.SIGPIPE)
    assert reader.stderr.read() == b""
    reader.stderr.close()
    return line


def test_a_control_verb_printing_into_a_closed_pipe_exits_quietly(daemon: Daemon) -> None:
    assert head_1("--socket", str(daemon.socket), "banned").split()[:2] == [b"JAIL", b"ADDRESS"]


# -- garbage on the wire -------------------------------------------------------------------

HUGE = 8 * 1024 * 1024
MALFORMED = [
    (b"[" * 100_000, "nested"),
    (b"{" * 50_000 + b"}" * 50_000, "not JSON"),
    (b'{"v": 1, "cmd": "ping", "args": {}, "n": ' + b"7" * 5000 + b"}", "not JSON"),
    (request("set", jail="demo", param="maxretry", value="1" * 5000), "too long"),
    (request("set", jail=None, param="loglevel", value="1" * 5000), "too long"),
    (request("set", jail="demo", param="bantime", value="9" * 5000), "too long"),
    (request("ban", jail="demo", ips=["1" * 5000]), "too long"),
    (request("status", jail="x" * HUGE), "too long"),
    (request("x" * HUGE), "unknown command"),
    (b'{"v": 1, "cmd": "ping", "args": {"' + b"k" * HUGE + b'": 1}}', "unexpected argument"),
    (b'{"v": "' + b"v" * HUGE + b'", "cmd": "ping"}', "unsupported protocol version"),
    (b'{"v": 1, "cmd": "status", "args": {"jail": "\xff\xfe"}}', "not JSON"),
    (b'{"v": 1, "cmd": "status", "args": {"jail": "\\ud800"}}', "not valid text"),
    (b'{"v": NaN, "cmd": "ping"}', "not JSON"),
    (b'{"v": 1, "cmd": "ping", "x": Infinity}', "not JSON"),
    (b'{"v": 1, "cmd": "ping", "args": {"x": -Infinity}}', "not JSON"),
    (b'{"v": 1e999, "cmd": "ping"}', "unsupported protocol version"),
]


def test_malformed_requests_get_one_line_errors_and_the_daemon_carries_on(
        tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS) as d:
        d.start()
        assert d.proc is not None
        pid = d.proc.pid
        lines = [line.rstrip(b"\n") + b"\n" for line, _ in MALFORMED]
        answers = exchange(d.socket, *lines, request("ping"))
        for (line, expected), answer in zip(MALFORMED, answers, strict=False):
            assert answer.endswith(b"\n") and len(answer) < 2048, (line[:60], answer[:200])
            reply = json.loads(answer)
            assert reply["ok"] is False and expected in reply["error"], (line[:60], reply)
        assert json.loads(answers[-1]) == {"ok": True, "result": "pong"}
        assert d.proc.poll() is None and d.proc.pid == pid
        assert d.cli("get", "demo", "maxretry").stdout.strip() == "1"
        assert "Traceback" not in d.log_text() + d.stderr()
        d.stop()


# -- the CLI's side ------------------------------------------------------------------------

def test_a_client_whose_daemon_hangs_up_mid_request_says_so(tmp_path: Path) -> None:
    """The CLI keeps SIGPIPE at its default (for `| head`), so its own socket writes must not
    raise it: a daemon that hangs up is a one-line error, exit 1, not a silent death."""
    path = tmp_path / "rude.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.close()

    rude = threading.Thread(target=hang_up, daemon=True)
    rude.start()
    try:
        done = subprocess.run([*CLI, "--socket", str(path), "ban", "demo", "-"],
                              input="\n".join(f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}"
                                              for i in range(150_000)),
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        rude.join(30)
        listener.close()
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stderr.startswith("banish: the daemon on ")
    assert done.stderr.count("\n") == 1


def test_regex_into_head_exits_quietly(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"2024-01-02 03:04:05 login failed for x from 192.0.2.{i % 250}\n"
                           for i in range(50_000)))
    line = head_1("regex", "--json", str(log), "login failed for \\S+ from <HOST>$")
    assert json.loads(line)["match"] is True


# -- the unit ------------------------------------------------------------------------------

def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_restarts_the_daemon_after_any_exit_not_asked_for() -> None:
    """systemd counts death by SIGPIPE (with SIGHUP, SIGINT, SIGTERM) as a *clean* exit, so
    ``Restart=on-failure`` left a daemon killed by a vanishing client dead. ``always`` restarts
    after every exit except the two that mean "stay down": 0 (a stop that was asked for:
    ``banish stop``, SIGTERM) and 2 (no jail could start: a broken configuration, which a
    restart cannot mend). A crash loop ends in the start rate limit."""
    u = unit()
    service = u["Service"]
    assert service["Restart"] == "always"
    assert set(service["RestartPreventExitStatus"].split()) == {"0", "2"}
    assert "SIGPIPE" not in service.get("SuccessExitStatus", "")
    assert "RestartForceExitStatus" not in service
    assert float(service["RestartSec"].rstrip("s")) >= 1
    limit = u["Unit"]
    assert int(limit["StartLimitBurst"]) >= 3
    assert int(limit["StartLimitIntervalSec"]) >= 60  # seconds
    assert "StartLimitIntervalSec" not in service and "StartLimitBurst" not in service


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or shutil.which("setpriv") is None,
                    reason="needs systemd-analyze and setpriv")
def test_the_unit_passes_systemd_analyze_verify() -> None:
    """Verified as uid 65534 in a scratch directory: systemd-analyze run as root touches
    /run/systemd; this never reaches the host's systemd. ExecStart points at the installed
    venv, which a development machine lacks, so only that path is swapped for /bin/true."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/banish/bin/banish run\n" in text
    scratch = Path(tempfile.mkdtemp(prefix="banish-unit-"))
    try:
        scratch.chmod(0o755)
        copy = scratch / "banish.service"
        copy.write_text(text.replace("ExecStart=/opt/banish/bin/banish", "ExecStart=/bin/true"))
        copy.chmod(0o644)
        as_nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups") \
            if os.geteuid() == 0 else ()
        done = subprocess.run([*as_nobody, "systemd-analyze", "verify", "--man=no", str(copy)],
                              cwd=scratch, capture_output=True, text=True, timeout=120,
                              check=False)
    finally:
        shutil.rmtree(scratch)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
