"""The control socket end to end: the real ControlServer on a real Unix socket, the real CLI
verbs (parsed by argparse as main.py does) and a fake daemon behind the handler interface."""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import banish
from banish.cli.commands import add_control_verbs
from banish.daemon import control
from banish.daemon.control import ControlServer, SocketInUse
from banish.errors import USAGE_EXIT, BanishError
from banish.protocol import (
    BANNED_KEYS,
    CHUNK,
    JAIL_STATUS_KEYS,
    STATUS_KEYS,
    SUMMARY_KEYS,
    CommandError,
)

T = TypeVar("T")
NOW = 1_700_000_000.0
JAILS = ("nginx", "sshd")


class FakeDaemon:
    """Just enough daemon to answer every command with the documented shapes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.bans: dict[tuple[str, str], float] = {}
        self.hold: tuple[threading.Event, asyncio.Event] | None = None

    def _jail(self, name: str | None) -> None:
        if name is not None and name not in JAILS:
            raise CommandError(f"no such jail: {name!r}")

    def _status(self, jail: str) -> dict[str, Any]:
        banned = sorted(ip for (j, ip) in self.bans if j == jail)
        return {"jail": jail, "currently_failed": 1, "total_failed": 7,
                "currently_banned": len(banned), "total_banned": len(banned) + 3,
                "banned": banned, "files": [f"/var/log/{jail}.log"], "file_errors": [],
                "backend": "polling"}

    async def handle(self, cmd: str, args: dict[str, Any]) -> Any:
        self.calls.append((cmd, dict(args)))
        if self.hold is not None:
            entered, release = self.hold
            entered.set()
            await release.wait()
        self._jail(args.get("jail"))
        if cmd == "ping":
            return "pong"
        if cmd == "stop":
            return "stopping"
        if cmd == "status":
            if args["jail"]:
                return self._status(args["jail"])
            summary = [{k: v for k, v in self._status(j).items() if k in SUMMARY_KEYS}
                       for j in JAILS]
            return {"jails": list(JAILS), "jail_count": len(JAILS), "summary": summary,
                    "skipped": [], "firewall_errors": [], "failed_bans": 0, "subscribers": [],
                    "store_backlog": 0, "store_error": "", "file_errors": [],
                    "friends": [], "names": [], "notifications": []}
        if cmd == "ban":
            fresh = [ip for ip in args["ips"] if (args["jail"], ip) not in self.bans]
            for ip in fresh:
                self.bans[(args["jail"], ip)] = NOW
            return {"banned": len(fresh), "already": len(args["ips"]) - len(fresh)}
        if cmd == "unban":
            wanted = set(args["ips"] or [])
            keys = [k for k in self.bans if args["jail"] in (None, k[0])
                    and (args["all"] or k[1] in wanted)]
            for k in keys:
                del self.bans[k]
            found = {k[1] for k in keys}
            missing = [ip for ip in args["ips"] or [] if ip not in found]
            return {"unbanned": len(keys), "not_banned": missing}
        if cmd == "banned":
            return [{"jail": j, "ip": ip, "banned_at": t, "expires_at": t + 600, "bantime": 600,
                     "origin": ""}
                    for (j, ip), t in sorted(self.bans.items())
                    if args["ip"] in (None, ip) and args["jail"] in (None, j)]
        if cmd == "reload":
            return {"jails": list(JAILS)}
        if cmd == "get":
            if args["param"] == "explode":
                raise RuntimeError("kaboom")
            if args["param"] == "unserialisable":
                return {"value": object()}
            return {"jail": args["jail"], "param": args["param"], "value": 5}
        if cmd == "set":
            return {"jail": args["jail"], "param": args["param"], "value": args["value"]}
        raise CommandError(f"unknown command {cmd!r}")


class LoopThread:
    """An event loop on its own thread, so the blocking CLI can run on the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@dataclass
class Daemon:
    path: str
    fake: FakeDaemon
    server: ControlServer


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def start(loop: LoopThread) -> Iterator[Any]:
    servers: list[ControlServer] = []

    def start(path: str, **kwargs: Any) -> Daemon:
        fake = FakeDaemon()
        server = ControlServer(path, fake, **kwargs)
        loop.run(server.start())
        servers.append(server)
        return Daemon(path, fake, server)

    yield start
    for server in servers:
        loop.run(server.close())


@pytest.fixture
def daemon(tmp_path: Path, start: Any) -> Daemon:
    d: Daemon = start(str(tmp_path / "run" / "banish.sock"))
    return d


def parser() -> argparse.ArgumentParser:
    """Built the way cli/main.py builds banish's parser."""
    p = argparse.ArgumentParser(prog="banish")
    p.add_argument("--socket")
    add_control_verbs(p.add_subparsers(dest="verb", required=True))
    return p


def cli(*argv: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch | None = None
        ) -> tuple[int, str, str]:
    """Run a verb in-process as main() would: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                args = parser().parse_args(argv)
                code = int(args.run(args))
            except BanishError as exc:
                print(f"banish: {exc}", file=sys.stderr)
                code = int(getattr(exc, "exit_code", USAGE_EXIT))
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def raw_exchange(path: str, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw lines on one connection; one parsed response per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        f = s.makefile("rb")
        answers = []
        for line in lines:
            s.sendall(line)
            answers.append(json.loads(f.readline()))
        f.close()
        return answers


# -- the socket ----------------------------------------------------------------------------

def test_socket_file_is_0600_in_a_0755_directory(daemon: Daemon) -> None:
    st = os.stat(daemon.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(daemon.path)).st_mode) == 0o755


def test_close_removes_the_socket_and_clients_see_no_daemon(loop: LoopThread, tmp_path: Path
                                                            ) -> None:
    path = str(tmp_path / "c.sock")
    server = ControlServer(path, FakeDaemon())
    loop.run(server.start())
    assert cli("--socket", path, "ping")[0] == 0
    loop.run(server.close())
    assert not os.path.exists(path)
    code, out, err = cli("--socket", path, "ping")
    assert (code, out) == (1, "")
    assert err == f"banish: banish is not running: no control socket at {path} (choose one " \
                  "with --socket)\n"


def test_stale_socket_is_replaced(tmp_path: Path, start: Any) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # a crashed daemon's leftover: the file exists, nobody listens
    code, _, err = cli("--socket", path, "ping")
    assert code == 1 and "nothing listens on" in err and err.count("\n") == 1
    start(path)
    assert cli("--socket", path, "ping")[:2] == (0, "pong\n")


def test_a_live_daemon_is_not_replaced(daemon: Daemon, loop: LoopThread) -> None:
    second = ControlServer(daemon.path, FakeDaemon())
    with pytest.raises(SocketInUse, match="another banish daemon is already answering on"):
        loop.run(second.start())
    assert cli("--socket", daemon.path, "ping")[:2] == (0, "pong\n")
    assert len(daemon.fake.calls) == 1


def test_a_non_socket_file_is_left_alone(tmp_path: Path, loop: LoopThread) -> None:
    path = tmp_path / "regular"
    path.write_text("keep me")
    with pytest.raises(BanishError, match="exists and is not a socket"):
        loop.run(ControlServer(str(path), FakeDaemon()).start())
    assert path.read_text() == "keep me"


# -- every verb through the real CLI -------------------------------------------------------

VERBS = [
    # (argv, expected (cmd, args) at the handler, fail2ban spellings of the same)
    (["ping"], ("ping", {}), []),
    (["status"], ("status", {"jail": None, "fleet": False}), []),
    (["status", "sshd"], ("status", {"jail": "sshd", "fleet": False}), []),
    (["ban", "sshd", "192.0.2.1", "2001:db8::/64"],
     ("ban", {"jail": "sshd", "ips": ["192.0.2.1", "2001:db8::/64"]}),
     [["set", "sshd", "banip", "192.0.2.1", "2001:db8::/64"]]),
    (["unban", "sshd", "192.0.2.1"], ("unban", {"ips": ["192.0.2.1"], "jail": "sshd",
                                                "all": False}),
     [["set", "sshd", "unbanip", "192.0.2.1"]]),
    (["unban", "192.0.2.1"], ("unban", {"ips": ["192.0.2.1"], "jail": None, "all": False}), []),
    (["unban", "--all"], ("unban", {"ips": None, "jail": None, "all": True}), []),
    (["unban", "--all", "sshd"], ("unban", {"ips": None, "jail": "sshd", "all": True}), []),
    (["banned"], ("banned", {"ip": None, "jail": None}), []),
    (["banned", "--jail", "sshd"], ("banned", {"ip": None, "jail": "sshd"}),
     [["get", "sshd", "banned"], ["get", "sshd", "banip"], ["get", "sshd", "banip", "--with-time"]]),
    (["reload"], ("reload", {"jail": None, "unban": False, "i_know": False, "session": None}), []),
    (["reload", "nginx"], ("reload", {"jail": "nginx", "unban": False, "i_know": False, "session": None}), []),
    (["reload", "--unban"], ("reload", {"jail": None, "unban": True, "i_know": False, "session": None}), []),
    (["reload", "--unban", "nginx"], ("reload", {"jail": "nginx", "unban": True, "i_know": False, "session": None}), []),
    (["get", "sshd", "maxretry"], ("get", {"jail": "sshd", "param": "maxretry"}), []),
    (["get", "loglevel"], ("get", {"jail": None, "param": "loglevel"}), []),
    (["set", "sshd", "bantime", "600"], ("set", {"jail": "sshd", "param": "bantime",
                                                 "value": "600"}), []),
    (["set", "loglevel", "DEBUG"], ("set", {"jail": None, "param": "loglevel",
                                            "value": "DEBUG"}), []),
    (["set", "sshd", "addignoreip", "192.0.2.1", "host.example"],
     ("set", {"jail": "sshd", "param": "addignoreip", "value": "192.0.2.1 host.example"}), []),
    (["stop"], ("stop", {}), []),
]


@pytest.mark.parametrize(("argv", "call", "spellings"), VERBS, ids=[" ".join(v[0]) for v in VERBS])
def test_verb_round_trips(daemon: Daemon, argv: list[str], call: tuple[str, dict[str, Any]],
                          spellings: list[list[str]]) -> None:
    for spelled in [argv, *spellings]:
        code, out, err = cli("--socket", daemon.path, *spelled)
        assert (code, err) == (0, ""), spelled
        assert daemon.fake.calls[-1] == call, spelled
        code, out, err = cli("--socket", daemon.path, *spelled, "--json")
        assert (code, err) == (0, ""), spelled
        json.loads(out)
        assert daemon.fake.calls[-1] == call, spelled


def test_socket_option_after_the_verb_and_from_the_environment(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("ping", "--socket", daemon.path)[:2] == (0, "pong\n")
    monkeypatch.setenv("BANISH_SOCKET", daemon.path)
    assert cli("ping")[:2] == (0, "pong\n")
    assert cli("--socket", daemon.path + ".none", "ping")[0] == 1


def test_json_outputs_have_the_documented_keys(daemon: Daemon) -> None:
    s = daemon.path

    def run_json(*argv: str) -> Any:
        code, out, err = cli("--socket", s, *argv, "--json")
        assert (code, err) == (0, "")
        return json.loads(out)

    assert run_json("ping") == "pong"
    assert run_json("ban", "sshd", "192.0.2.1", "192.0.2.2") == {"banned": 2, "already": 0}
    assert run_json("set", "sshd", "banip", "192.0.2.2") == {"banned": 0, "already": 1}
    status = run_json("status")
    assert set(status) == STATUS_KEYS and status["jail_count"] == 2
    assert all(set(row) == SUMMARY_KEYS for row in status["summary"])
    jail = run_json("status", "sshd")
    assert set(jail) == JAIL_STATUS_KEYS and jail["banned"] == ["192.0.2.1", "192.0.2.2"]
    banned = run_json("banned", "192.0.2.1")
    assert len(banned) == 1 and set(banned[0]) == BANNED_KEYS
    assert run_json("get", "sshd", "banned") == run_json("banned", "--jail", "sshd")
    assert set(run_json("get", "sshd", "maxretry")) == {"jail", "param", "value"}
    assert run_json("unban", "192.0.2.1", "192.0.2.99") == {"unbanned": 1,
                                                            "not_banned": ["192.0.2.99"]}
    assert run_json("reload") == {"jails": list(JAILS)}
    # --with-time is the client's rendering: --json shows the daemon's rows unchanged
    assert run_json("get", "sshd", "banip", "--with-time") == run_json("banned", "--jail", "sshd")


def test_human_outputs(daemon: Daemon) -> None:
    s = daemon.path
    assert cli("--socket", s, "ban", "sshd", "192.0.2.1")[1] == \
        "banned 1 in sshd, 0 already banned\n"
    out = cli("--socket", s, "status", "sshd")[1].splitlines()
    assert out[0] == "Status for the jail: sshd"
    assert "   `- Banned IP list:\t192.0.2.1" in out
    out = cli("--socket", s, "status")[1].splitlines()
    assert out[:3] == ["Status", "|- Number of jail:\t2", "`- Jail list:\tnginx, sshd"]
    out = cli("--socket", s, "banned")[1].splitlines()
    assert out[0].split() == ["JAIL", "ADDRESS", "BANNED", "AT", "EXPIRES", "AT", "LEFT"]
    assert out[1].split()[:2] == ["sshd", "192.0.2.1"] and len(out) == 2
    cli("--socket", s, "ban", "sshd", "192.0.2.2")
    assert cli("--socket", s, "get", "sshd", "banip") == (0, "192.0.2.1 192.0.2.2\n", "")
    code, out, _ = cli("--socket", s, "get", "sshd", "banip", "--with-time")
    lines = out.splitlines()
    assert code == 0 and [line.split(" \t")[0] for line in lines] == ["192.0.2.1", "192.0.2.2"]
    assert all(" + 600 = " in line for line in lines)
    assert cli("--socket", s, "get", "nginx", "banip") == (0, "", "")


def test_banned_exit_status_says_whether_an_address_is_banned(daemon: Daemon) -> None:
    s = daemon.path
    assert cli("--socket", s, "banned", "192.0.2.7") == (1, "192.0.2.7 is not banned\n", "")
    cli("--socket", s, "ban", "nginx", "192.0.2.7")
    code, out, _ = cli("--socket", s, "banned", "192.0.2.7")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["nginx", "192.0.2.7"]


def test_daemon_refusals_are_one_line_usage_errors(daemon: Daemon) -> None:
    code, out, err = cli("--socket", daemon.path, "status", "nope")
    assert (code, out, err) == (2, "", "banish: no such jail: 'nope'\n")
    code, out, err = cli("--socket", daemon.path, "ban", "sshd", "999.1.1.1")
    assert (code, out) == (2, "") and "not an IP address or network: '999.1.1.1'" in err
    assert all(c[0] != "ban" for c in daemon.fake.calls)  # refused before anything was sent


def test_handler_crash_is_an_error_answer_and_the_server_keeps_serving(daemon: Daemon) -> None:
    code, _, err = cli("--socket", daemon.path, "get", "sshd", "explode")
    assert code == 2 and err == "banish: internal error in 'get': RuntimeError: kaboom\n"
    code, _, err = cli("--socket", daemon.path, "get", "sshd", "unserialisable")
    assert code == 2 and "result is not JSON" in err
    assert cli("--socket", daemon.path, "ping")[:2] == (0, "pong\n")


# -- bad input on the wire -----------------------------------------------------------------

def test_malformed_requests_get_error_answers_and_the_connection_survives(daemon: Daemon) -> None:
    answers = raw_exchange(
        daemon.path,
        b"{not json\n",
        b"\xff\xfe\x00\n",
        b"[1, 2, 3]\n",
        b'{"v": 1, "cmd": "rm -rf /"}\n',
        b'{"v": 1, "cmd": "ban", "args": {"jail": "sshd", "ips": "192.0.2.1"}}\n',
        b"\n" + b'{"v": 1, "cmd": "ping", "args": {}}\n',
    )
    assert [a["ok"] for a in answers] == [False, False, False, False, False, True]
    assert answers[0]["error"].startswith("malformed request: not JSON")
    assert answers[3]["error"].startswith("unknown command 'rm -rf /'")
    assert answers[5]["result"] == "pong"
    assert all("\n" not in a.get("error", "") for a in answers)
    assert [c[0] for c in daemon.fake.calls] == ["ping"]


def test_oversized_request_is_refused_then_the_server_serves_others(tmp_path: Path,
                                                                     start: Any) -> None:
    d = start(str(tmp_path / "small.sock"), max_request=1024)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(d.path)
        s.sendall(b'{"v": 1, "cmd": "ping", "pad": "' + b"x" * 4096)
        answer = json.loads(s.makefile("rb").readline())
        assert answer == {"ok": False, "error": "request too large (limit 1024 bytes)"}
        assert s.recv(1) == b""  # framing is lost, so that connection is closed
    assert raw_exchange(d.path, b'{"v": 1, "cmd": "ping"}\n')[0]["result"] == "pong"


def test_deep_nesting_and_nan_get_answers_and_the_connection_survives(
        daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    """json.loads raises RecursionError past the interpreter's limit: that used to escape as
    a server error, close the connection unanswered and log a traceback."""
    caplog.set_level(logging.DEBUG, logger="banish")
    answers = raw_exchange(daemon.path, b"[" * 100_000 + b"\n",
                           b'{"v": 1, "cmd": "ping", "x": NaN}\n',
                           b'{"v": 1, "cmd": "ping"}\n')
    assert answers[:2] == [
        {"ok": False, "error": "malformed request: nested too deeply"},
        {"ok": False, "error": "malformed request: not JSON (NaN is not JSON)"}]
    assert answers[2] == {"ok": True, "result": "pong"}
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


def test_a_bug_reading_a_request_is_still_one_answer(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A bug (not a client's mistake) is logged with its traceback, and the client still
    hears one line and may go on."""
    def broken(line: bytes) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(control, "parse_request", broken)
    answers = raw_exchange(daemon.path, b'{"v": 1, "cmd": "ping"}\n', b"{}\n")
    assert answers == [{"ok": False, "error": "internal error reading the request: KeyError"}] * 2
    assert [r.exc_info is not None for r in caplog.records
            if r.name == "banish.control" and r.levelno >= logging.ERROR] == [True, True]


def test_clients_gone_before_their_answers_cost_the_server_nothing(
        daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    """Each writes its request and closes (or half-closes) without reading: the answer's
    write fails, at debug level, and the next client is served."""
    caplog.set_level(logging.DEBUG, logger="banish.control")
    daemon.fake.bans = {("sshd", f"10.0.{i >> 8}.{i & 255}"): NOW for i in range(20_000)}
    banned = b'{"v": 1, "cmd": "banned", "args": {}}\n'  # about 2 MB: outgrows the buffers
    for i in range(200):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(daemon.path)
            s.sendall(banned if i % 20 == 0 else b'{"v": 1, "cmd": "status"}\n')
            if i % 2:
                s.shutdown(socket.SHUT_WR)
    for _ in range(200):  # the server may still be answering the last of them
        if len(daemon.fake.calls) == 200:
            break
        time.sleep(0.05)
    assert raw_exchange(daemon.path, b'{"v": 1, "cmd": "ping"}\n') == [
        {"ok": True, "result": "pong"}]
    assert len(daemon.fake.calls) == 201 and len(daemon.fake.bans) == 20_000
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert any("went away" in r.getMessage() for r in caplog.records)


SIGPIPE_PROBE = """
import asyncio, signal, sys, threading
from banish.daemon.control import ControlServer
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
async def start_and_close() -> None:
    server = ControlServer(sys.argv[1], object())  # type: ignore[arg-type]
    await server.start()
    await server.close()
if sys.argv[2] == "main":
    asyncio.run(start_and_close())
else:
    t = threading.Thread(target=asyncio.run, args=(start_and_close(),))
    t.start()
    t.join()
print(signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN)
"""


@pytest.mark.parametrize(("thread", "ignored"), [("main", "True"), ("other", "False")])
def test_the_server_makes_sure_sigpipe_is_ignored(tmp_path: Path, thread: str,
                                                  ignored: str) -> None:
    """Belt and braces behind `banish run`: on the main thread the server ignores SIGPIPE
    itself; on another it may not, and says what that risks."""
    done = subprocess.run([sys.executable, "-c", SIGPIPE_PROBE, str(tmp_path / "p.sock"),
                           thread], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == f"{ignored}\n"
    assert ("SIGPIPE is not ignored" in done.stderr) == (thread == "other")


def test_a_half_closed_client_gets_all_its_answers(daemon: Daemon) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(daemon.path)
        s.sendall(b'{"v": 1, "cmd": "ping"}\n{"v": 1, "cmd": "status", "args": {}}\n')
        s.shutdown(socket.SHUT_WR)  # "no more questions", not "gone"
        with s.makefile("rb") as f:
            assert json.loads(f.readline()) == {"ok": True, "result": "pong"}
            assert json.loads(f.readline())["result"]["jails"] == list(JAILS)
            assert f.read() == b""


def test_close_lets_a_running_request_answer(daemon: Daemon, loop: LoopThread) -> None:
    entered, release = threading.Event(), asyncio.Event()
    daemon.fake.hold = (entered, release)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as busy, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        for s in (busy, idle):
            s.settimeout(10)
            s.connect(daemon.path)
        busy.sendall(b'{"v": 1, "cmd": "stop"}\n')
        assert entered.wait(10)
        closing = asyncio.run_coroutine_threadsafe(daemon.server.close(), loop.loop)
        assert idle.recv(1) == b""  # idle connections are cut at once
        loop.loop.call_soon_threadsafe(release.set)
        f = busy.makefile("rb")
        assert json.loads(f.readline()) == {"ok": True, "result": "stopping"}
        assert f.read() == b""  # ... and the busy one after its answer
        f.close()
        closing.result(10)
    assert not os.path.exists(daemon.path)



def test_close_cuts_a_request_that_outlives_the_grace(tmp_path: Path, start: Any,
                                                      loop: LoopThread) -> None:
    d = start(str(tmp_path / "g.sock"), close_grace=0.05)
    entered, never = threading.Event(), asyncio.Event()
    d.fake.hold = (entered, never)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(d.path)
        s.sendall(b'{"v": 1, "cmd": "reload"}\n')
        assert entered.wait(10)
        loop.run(d.server.close())
        assert s.recv(1) == b""


@pytest.mark.parametrize("turns", range(5))
def test_close_right_after_a_connect_leaks_nothing(tmp_path: Path, loop: LoopThread,
                                                   turns: int) -> None:
    """close() called on any loop turn between accept() and the connection's task must still
    close that connection (asyncio 3.11 leaks a transport made after Server.close())."""
    path = str(tmp_path / "r.sock")
    server = ControlServer(path, FakeDaemon())
    loop.run(server.start())

    async def connect_then_close() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)  # completes in the kernel; the loop accepts on a later turn
            for _ in range(turns):
                await asyncio.sleep(0)
            await server.close()

    loop.run(connect_then_close())
    gc.collect()  # an unclosed transport warns here; pytest turns that into a failure


def test_close_leaves_a_successors_socket_alone(tmp_path: Path, start: Any,
                                                loop: LoopThread) -> None:
    path = str(tmp_path / "s.sock")
    old = start(path)
    os.unlink(path)  # e.g. a second daemon started by hand after someone removed the file
    new = start(path)
    loop.run(old.server.close())
    assert os.path.exists(path)
    assert cli("--socket", path, "ping")[:2] == (0, "pong\n")
    assert new.fake.calls == [("ping", {})]

# -- bulk ----------------------------------------------------------------------------------

def test_bulk_ban_of_more_than_a_request_of_addresses_from_stdin(daemon: Daemon) -> None:
    count = CHUNK + 7  # two requests
    ips = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(count)]
    text = "# exported list\n\n" + "\n".join(ips) + "\n"
    started = time.perf_counter()
    code, out, err = cli("--socket", daemon.path, "ban", "sshd", "-", "--json", stdin=text)
    elapsed = time.perf_counter() - started
    assert (code, err) == (0, "")
    assert json.loads(out) == {"banned": count, "already": 0}
    calls = [c for c in daemon.fake.calls if c[0] == "ban"]
    assert len(calls) == 2
    assert [ip for _, args in calls for ip in args["ips"]] == ips
    print(f"bulk ban of {count} addresses via the CLI: {elapsed:.2f} s")
    assert elapsed < 30
    # the same list again: all already banned; then unban all of it from stdin
    assert json.loads(cli("--socket", daemon.path, "ban", "sshd", "-", "--json",
                          stdin=text)[1]) == {"banned": 0, "already": count}
    assert json.loads(cli("--socket", daemon.path, "unban", "sshd", "-", "--json",
                          stdin=text)[1]) == {"unbanned": count, "not_banned": []}


def test_bad_stdin_line_sends_nothing(daemon: Daemon) -> None:
    code, out, err = cli("--socket", daemon.path, "ban", "sshd", "-",
                         stdin="192.0.2.1\n192.0.2.2\nfoo.example\n")
    assert (code, out) == (2, "")
    assert err == "banish: <stdin>:3: not an IP address or network: 'foo.example'\n"
    assert daemon.fake.calls == []


def test_empty_stdin_is_a_no_op(daemon: Daemon) -> None:
    assert cli("--socket", daemon.path, "ban", "sshd", "-", stdin="") == \
        (0, "banned 0 in sshd, 0 already banned\n", "")


# -- peers ---------------------------------------------------------------------------------

CLIENT = """
import argparse, sys
from banish.cli.commands import add_control_verbs
from banish.errors import BanishError
p = argparse.ArgumentParser(prog="banish")
p.add_argument("--socket")
add_control_verbs(p.add_subparsers(dest="verb", required=True))
a = p.parse_args(sys.argv[1:])
try:
    sys.exit(a.run(a))
except BanishError as e:
    print(f"banish: {e}", file=sys.stderr)
    sys.exit(getattr(e, "exit_code", 2))
"""

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(banish.__file__).parents[1]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*NOBODY, sys.executable, "-c", CLIENT, *argv], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory uid 65534 can reach (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="banish-ctl-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a client as another uid")
def test_other_uids_are_refused(public_dir: Path, start: Any) -> None:
    probe = as_nobody("--help")
    if probe.returncode != 0:
        pytest.skip(f"uid 65534 cannot run this python: {probe.stderr.strip()[-200:]}")
    d = start(str(public_dir / "banish.sock"))
    # 0600 root: the kernel refuses the connect itself
    r = as_nobody("--socket", d.path, "ping")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.startswith(f"banish: permission denied on control socket {d.path}")
    # a too-wide mode (an admin's chmod) still does not let them in: SO_PEERCRED does
    os.chmod(d.path, 0o666)
    r = as_nobody("--socket", d.path, "ban", "sshd", "192.0.2.1")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "banish: permission denied: uid 65534 may not control banish " \
                       "(allowed uids: 0)\n"
    assert d.fake.calls == []
    assert cli("--socket", d.path, "ping")[:2] == (0, "pong\n")
