"""The one way banish runs another program: an argv, bounded in time and in output.

Owns `run_process` and its `ProcessResult`. Every external command goes through it: ``nft``
(nftables backend), ``ipset`` and ``iptables-restore`` (xtables), fail2ban action.d scripts
(``actions/command.py``) and ``ignorecommand`` (``daemon/jailrun.py``). Must not take a shell
string built from data -- callers pass an argv; a shell script with per-ban values is
``[shell, "-c", script, "banish", value...]`` as ``actions.escape.shell_command`` makes it --
and must not interpret exit statuses: what a failure means is the caller's business.

Why one runner: the three that were here before each got a different subset right. This one
gives every command

- its own session (process group), killed whole -- SIGTERM, a grace period, then SIGKILL --
  when it outlives ``timeout`` or the caller is cancelled (the daemon stopping), so nothing
  it started keeps changing the firewall later;
- its input as an in-memory file (memfd) rather than a pipe: the program reads it at its own
  pace while the event loop builds the next batch, and a payload of megabytes never waits
  for the loop to feed a pipe;
- stdout and stderr through pipes read as they fill, keeping at most ``limit`` bytes of each
  (a script printing without end costs no memory), and counted done when the program exits:
  a background child that still holds the pipe (``sleep 30 &``) does not hold up the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["OUTPUT_LIMIT", "ProcessResult", "one_line", "run_process"]

OUTPUT_LIMIT = 64 * 1024
"""Bytes of stdout and of stderr kept by default; a tool whose output is data (a ruleset
listing) asks for ``limit=None``."""

KILL_GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL for the process group of a command being killed."""

_CHUNK = 64 * 1024
_DRAIN_MAX = 1 << 20
"""After the program exits, read at most this much more of what is left in a pipe: a
background child that writes without end must not keep the caller reading."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a command ended.

    ``returncode`` is None when the command never started or was killed for its time;
    negative when a signal ended it. ``problem`` says why it did not run to its end ("cannot
    run X: ...", "timed out after N s and was killed"), else None. ``stdout``/``stderr`` are
    the first ``limit`` bytes of each; ``truncated`` says more was written.
    """

    returncode: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    problem: str | None = None
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None and self.returncode == 0

    @property
    def status(self) -> str:
        """``exit status N``, ``killed by signal N`` or ``no exit status``, for messages."""
        code = self.returncode
        if code is None:
            return "no exit status"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    def failure(self, what: str, *, detail_limit: int = 600) -> str | None:
        """None if the command ran and exited 0; else one line naming ``what`` failed, how,
        and the start of its stderr."""
        if self.problem is not None:
            return f"{what} {self.problem}" if self.timed_out else f"{what}: {self.problem}"
        if self.returncode == 0:
            return None
        detail = one_line(self.stderr, detail_limit)
        return f"{what} failed ({self.status})" + (f": {detail}" if detail else "")


def one_line(data: bytes, limit: int = 2000) -> str:
    """Output for a log line or an error message: its non-blank lines joined by " | ", cut
    at ``limit`` characters (marked)."""
    text = data.decode("utf-8", "replace")
    joined = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= limit else joined[:limit] + " ...[truncated]"


class _Capture:
    """One output pipe, read by the event loop as it fills; keeps the first ``limit`` bytes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int | None) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._loop = loop
        self._limit = limit
        self._parts: list[bytes] = []
        self._kept = 0
        self.truncated = False
        self._open = True
        loop.add_reader(self.read_fd, self._on_readable)

    def _on_readable(self) -> None:
        self._read(_CHUNK * 16)

    def _read(self, budget: int) -> None:
        """Read what is there (up to ``budget`` bytes); close at end of file."""
        while self._open and budget > 0:
            try:
                data = os.read(self.read_fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            budget -= len(data)
            self._keep(data)

    def _keep(self, data: bytes) -> None:
        if self._limit is None:
            self._parts.append(data)
            return
        room = self._limit - self._kept
        if len(data) > room:
            self.truncated = True
            data = data[:max(room, 0)]
        if data:
            self._parts.append(data)
            self._kept += len(data)

    def finish(self) -> bytes:
        """What the program wrote, once it has exited: the rest still in the pipe is read
        (bounded), and the pipe closed even if a background child still holds it."""
        self._read(_DRAIN_MAX)
        self.close()
        return b"".join(self._parts)

    def close_child_end(self) -> None:
        """Close the write end (the child has its own copy once started); idempotent."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self.read_fd)
            os.close(self.read_fd)


def _input_file(data: bytes | None) -> int:
    """A descriptor reading ``data`` from its start (/dev/null for None)."""
    if data is None:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    fd = os.memfd_create("banish-input", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: bytes | None = None,
    limit: int | None = OUTPUT_LIMIT,
    kill_grace: float = KILL_GRACE,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run ``argv`` without blocking the event loop; see the module docstring for how.

    ``env`` replaces the environment when given (native ``banish-exec`` passes tag values so).

    ``stdin`` is the program's whole input (None: /dev/null). ``limit`` bytes of stdout and
    of stderr are kept (None: all of it). A program that cannot be started or outlives
    ``timeout`` seconds comes back as a result with ``problem`` set; cancelling the caller
    kills the program's process group and re-raises.
    """
    if not argv:
        raise ValueError("run_process needs a program to run")
    loop = asyncio.get_running_loop()
    source = _input_file(stdin)
    out: _Capture | None = None
    err: _Capture | None = None
    try:
        out = _Capture(loop, limit)
        err = _Capture(loop, limit)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=source, stdout=out.write_fd, stderr=err.write_fd,
                start_new_session=True, env=None if env is None else dict(env))
        except OSError as exc:
            return ProcessResult(None, problem=f"cannot run {argv[0]}: {exc.strerror or exc}")
        finally:
            os.close(source)
            source = -1
            out.close_child_end()
            err.close_child_end()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            await _kill_group(proc, kill_grace)
            return ProcessResult(None, out.finish(), err.finish(),
                                 problem=f"timed out after {timeout:g} s and was killed",
                                 timed_out=True, truncated=out.truncated or err.truncated)
        except BaseException:  # cancelled (the daemon stopping): leave nothing running
            await asyncio.shield(_kill_group(proc, kill_grace))
            raise
        stdout, stderr = out.finish(), err.finish()
        return ProcessResult(proc.returncode, stdout, stderr,
                             truncated=out.truncated or err.truncated)
    finally:
        if source >= 0:
            os.close(source)
        for capture in (out, err):
            if capture is not None:
                capture.close_child_end()
                capture.close()


async def _kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """Terminate the command and everything it started (its own session), then kill the rest.

    As fail2ban does: SIGTERM first, then SIGKILL for whatever of the group still lives, so a
    child that ignores SIGTERM or outlives its shell does not keep running.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
