"""The control socket server: the daemon's end of ``banish.protocol``.

Owns the Unix socket file (its mode, its directory, replacing a stale one), who may connect
(SO_PEERCRED: root or the daemon's own uid), message framing and size limits, and turning any
failure of one request into an error response. Must not know what a command means: it hands
checked ``(cmd, args)`` to the handler (the runtime) and sends back what it returns. Bad input
from a client closes at most that client's connection, never the server.

A client that goes away before reading its answer (Ctrl-C, ``| head``, a crash) is its own
business: the write fails with EPIPE or ECONNRESET, logged at debug, and the next client is
served. That needs SIGPIPE ignored, which ``start`` makes sure of: at its default disposition
the failed write would kill the whole daemon, silently, leaving a stale socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import struct
import threading
from collections.abc import Collection
from typing import Any, Protocol

from ..errors import BanishError
from ..protocol import MAX_REQUEST, ProtocolError, encode_error, encode_result, parse_request

log = logging.getLogger("banish.control")

__all__ = ["ControlHandler", "ControlServer", "SocketInUse"]

# How long a stale-socket probe waits for a listener, and how long close() lets a request
# that is already running finish before its connection is cut.
PROBE_TIMEOUT = 1.0
CLOSE_GRACE = 5.0
# Loop turns close() waits at most for connections accepted just before it to get going.
_START_TURNS = 10
_PEERCRED = struct.Struct("3i")


class ControlHandler(Protocol):
    async def handle(self, cmd: str, args: dict[str, Any]) -> Any:
        """A JSON-serialisable result; raises CommandError (any BanishError) for user errors."""
        ...


class SocketInUse(BanishError):
    """Another daemon answers on the socket: starting would steal its control channel."""


class ControlServer:
    """Serve ``handler`` on the Unix socket at ``path`` (mode 0600).

    ``allowed_uids`` defaults to root and the daemon's own uid, which lets the test suite
    (and an unprivileged daemon) use the socket without running as root.
    """

    def __init__(self, path: str, handler: ControlHandler, *,
                 allowed_uids: Collection[int] | None = None,
                 max_request: int = MAX_REQUEST, close_grace: float = CLOSE_GRACE) -> None:
        self.path = path
        self.handler = handler
        self.allowed_uids = frozenset({0, os.getuid()} if allowed_uids is None
                                      else allowed_uids)
        self.max_request = max_request
        self.close_grace = close_grace
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None
        self._sock: socket.socket | None = None
        self._connections: set[_Connection] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and listen. Raises SocketInUse when a live daemon answers on ``path`` and
        BanishError when the path cannot be used; a dead daemon's leftover socket is replaced."""
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            try:
                os.makedirs(directory, mode=0o755)
                # makedirs' mode is filtered by the umask; 0755 like /run/sshd: the socket's
                # own 0600 mode is what keeps others out.
                os.chmod(directory, 0o755)  # noqa: S103
            except OSError as exc:
                raise BanishError(f"cannot create socket directory {directory}: "
                                  f"{exc.strerror}") from exc
        _ignore_sigpipe()
        await self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            # The umask closes the window between bind() creating the file and chmod():
            # nobody else may ever connect, not even for a moment.
            old = os.umask(0o177)
            try:
                sock.bind(self.path)
                bound = True
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            sock.listen(64)
            sock.setblocking(False)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(self._protocol, sock=sock)
            self._sock = sock
        except OSError as exc:
            sock.close()
            if bound:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            raise BanishError(f"cannot listen on control socket {self.path}: "
                              f"{exc.strerror or exc}") from exc
        log.info("Control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting; let running requests answer (up to close_grace s); remove the file
        if it is still ours (a successor may already have replaced it).

        Never await this from inside a handler: it waits for the running requests, that one
        included. A ``stop`` handler should only signal the runtime, which closes later.
        """
        if self._server is None:
            return
        # Stop accepting first, then let connections already accepted reach their task (their
        # transport is made one loop turn after accept(), their task the turn after). Closing
        # the Server before that makes asyncio (3.11) fail those transports and leak them.
        assert self._sock is not None
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        for turn in range(_START_TURNS):
            if turn >= 2 and all(c.task is not None for c in self._connections):
                break
            await asyncio.sleep(0)
        self._server.close()
        for conn in list(self._connections):
            conn.stop()
        tasks = [c.task for c in self._connections if c.task is not None]
        self._connections.clear()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.close_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()
        self._server = self._sock = None
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)

    async def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise BanishError(f"control socket path {self.path} exists and is not a socket; "
                              "remove it or choose another socket")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path),
                                               PROBE_TIMEOUT)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # nobody listens: a crashed daemon's leftover
        except (OSError, TimeoutError) as exc:
            raise SocketInUse(f"control socket {self.path} exists and cannot be probed "
                              f"({getattr(exc, 'strerror', None) or exc}); is another banish "
                              "running?") from exc
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            raise SocketInUse(f"another banish daemon is already answering on {self.path}; "
                              "stop it first (banish stop) or choose another socket")
        log.warning("Replacing stale control socket %s", self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # -- connections ----------------------------------------------------------------------

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        # Registered when accepted (not when its task first runs), so close() knows of every
        # connection. The reader limit bounds one request line (plus newline).
        reader = asyncio.StreamReader(limit=self.max_request + 1)
        conn = _Connection(self, reader)
        self._connections.add(conn)
        return asyncio.StreamReaderProtocol(reader, conn.start)


def _ignore_sigpipe() -> None:
    """Belt and braces behind ``banish run`` (cli/main.py), for any other host of a server:
    a client that hangs up must cost an EPIPE, not the process. Only the main thread may set
    a disposition; elsewhere the host owns it, and is told when it got it wrong."""
    if signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN:
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    else:
        log.warning("SIGPIPE is not ignored: a control client that hangs up before reading "
                    "its answer will kill this process")


class _Connection:
    """One client: requests answered in order until it hangs up or the server closes."""

    def __init__(self, server: ControlServer, reader: asyncio.StreamReader) -> None:
        self.server = server
        self.reader = reader
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.busy = False
        self.stopping = False

    def start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """StreamReaderProtocol's connected callback: runs synchronously in connection_made,
        so the task exists before anyone can ask close() about it."""
        self.writer = writer
        self.task = asyncio.get_running_loop().create_task(self._run(writer))

    def stop(self) -> None:
        """Close now if idle; a running request first answers, then the connection closes."""
        self.stopping = True
        if not self.busy and self.writer is not None:
            self.writer.close()

    async def _run(self, writer: asyncio.StreamWriter) -> None:
        try:
            await self.serve(writer)
        except ConnectionError as exc:  # BrokenPipe, ConnectionReset: gone mid-answer
            log.debug("Control client went away before its answer: %s", exc)
        except Exception:  # a server bug must cost one connection, not the daemon
            log.exception("Control connection failed")
        finally:
            self.server._connections.discard(self)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @staticmethod
    def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
        sock = writer.get_extra_info("socket")
        if sock is None:
            return None
        try:
            _, uid, _ = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError:
            return None
        return int(uid)

    async def serve(self, writer: asyncio.StreamWriter) -> None:
        uid = self._peer_uid(writer)
        if uid not in self.server.allowed_uids:
            log.warning("Control connection refused: uid %s is not allowed", uid)
            await self._send(writer, encode_error(
                f"permission denied: uid {uid} may not control banish (allowed uids: "
                f"{', '.join(map(str, sorted(self.server.allowed_uids)))})"))
            return
        while not self.stopping:
            try:
                line = await self.reader.readline()
            except ValueError:  # longer than the reader's limit: framing is lost, so hang up
                limit = self.server.max_request
                await self._send(writer,
                                 encode_error(f"request too large (limit {limit} bytes)"))
                return
            except (ConnectionError, OSError) as exc:
                if exc.errno not in (None, errno.ECONNRESET, errno.EPIPE):
                    log.debug("Control read failed: %s", exc)
                return
            if not line:
                return
            if not line.strip():
                continue
            self.busy = True
            try:
                await self._send(writer, await self._answer(line))
            finally:
                self.busy = False

    async def _answer(self, line: bytes) -> bytes:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            log.debug("Control request refused: %s", exc)
            return encode_error(str(exc))
        except Exception as exc:  # a bug in the parser: still one answer, and the traceback
            log.exception("Control request could not be parsed")
            return encode_error(f"internal error reading the request: {type(exc).__name__}")
        try:
            result = await self.server.handler.handle(request.cmd, request.args)
        except BanishError as exc:
            return encode_error(str(exc))
        except Exception as exc:
            log.exception("Control command %r failed", request.cmd)
            return encode_error(f"internal error in {request.cmd!r}: "
                                f"{type(exc).__name__}: {exc}")
        try:
            return encode_result(result)
        except (TypeError, ValueError) as exc:
            log.error("Control command %r returned a non-JSON result: %s", request.cmd, exc)
            return encode_error(f"internal error in {request.cmd!r}: result is not JSON ({exc})")

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
