"""One running jail: its sources feeding its pipeline, its bans going to the enforcer.

Owns the asynchronous edges around ``banish.pipeline`` for one jail: reading sources, resolving
host names a failure named (``usedns``), asking ``ignorecommand``, handing bans to the
``Enforcer`` and saving the source's position only after the batch's bans are committed, so a
crash re-reads at most one batch and never loses a reported ban. Must not: touch the firewall,
read config files or options (the jail arrives compiled), or decide anything the pipeline
decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import socket
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..actions.escape import shell_command
from ..addr import canonical_address
from ..config.loader import JailConfig
from ..core.active import ActiveBans
from ..core.events import Outcome
from ..core.policy import PriorBans
from ..events import Failure
from ..pipeline import Pipeline
from ..process import run_process
from ..sources.base import Batch, Position, SourceStatus
from ..sources.file import FileSource
from ..store.base import FilePosition, Store, StoreError
from .enforcer import Enforcer
from .logsetup import NOTICE

log = logging.getLogger("banish.filter")

Clock = Callable[[], float]

FOUND_PER_WINDOW = 100
FOUND_WINDOW = 10.0
"""At most FOUND_PER_WINDOW "Found" lines per jail each FOUND_WINDOW seconds; a flood gets one
count line instead (2,000,000 failures once wrote 205 MB of log, 1.6x slower)."""

IGNORECOMMAND_TIMEOUT = 10.0
"""Seconds an ``ignorecommand`` may take before it is killed (and does not ignore)."""


def _journal_available() -> bool:
    try:
        import importlib

        importlib.import_module("systemd.journal")
    except ImportError:
        return False
    return True


def source_kind(jail: JailConfig) -> str:
    """``backend = auto``: files when a logpath exists, else the journal when it can be read.
    Decided when the jail starts, from what the disk holds then."""
    backend = jail.source.backend
    if backend != "auto":
        return backend
    for lp in jail.source.logpaths:
        if glob.glob(lp.path):
            return "auto"
    if jail.source.journalmatch and _journal_available():
        return "systemd"
    return "auto"


class JailRunner:
    """Sources -> pipeline -> enforcer for one jail."""

    def __init__(self, config: JailConfig, *, store: Store, enforcer: Enforcer, clock: Clock,
                 history: float, self_addresses: tuple[str, ...] = ()) -> None:
        self.config = config
        self.name = config.name
        self.store = store
        self.enforcer = enforcer
        self.clock = clock
        self.history = history
        self.self_addresses = self_addresses
        self.source_kind = source_kind(config)
        self.pipeline = self._make_pipeline(config)  # raises ConfigError: nothing started yet
        self.statuses: dict[str, SourceStatus] = {}
        self._ignore_answer: tuple[str, Failure, bool] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.files: list[str] = []
        self.on_failure: Callable[[str, str, float], None] | None = None
        """Told of each counted failure (the fleet's fleetmaxretry counting)."""
        self.on_batch: Callable[[JailRunner, int, float], None] | None = None
        """Told of each batch: lines read, seconds spent matching it (metrics)."""
        self._found_since = 0.0
        self._found_logged = 0
        self._found_quiet = 0
        self._forged_since = 0.0
        self._forged_quiet = 0

    def _make_pipeline(self, config: JailConfig) -> Pipeline:
        return Pipeline(config, journal=self.source_kind == "systemd",
                        prior_bans=self._prior_bans, self_addresses=self.self_addresses,
                        ignore_predicate=self._ignore_command
                        if config.settings.ignorecommand else None)

    @property
    def core(self) -> Any:
        return self.pipeline.core

    def apply_settings(self, config: JailConfig) -> None:
        """New numbers (``banish set``): a fresh pipeline; failure windows start over."""
        self.config = config
        self.pipeline = self._make_pipeline(config)

    # -- hooks for the core -------------------------------------------------------------------

    def _prior_bans(self, address: str, jail: str | None) -> PriorBans | None:
        count = self.store.ban_count(address, jail, self.clock() - self.history)
        return count if count.count else None

    def _ignore_command(self, address: str, failure: Failure | None) -> bool:
        """The core's ``ignorecommand`` hook: the verdict `_ask_ignore_command` fetched for
        this very failure just before (the core is synchronous; the command is not)."""
        return self._ignore_answer == (address, failure, True)

    async def _ask_ignore_command(self, address: str, failure: Failure) -> None:
        """fail2ban's ``ignorecommand``: exit status 0 means "ignore this address". Run as
        fail2ban runs it, for every failure, but without stopping the other jails meanwhile;
        a command that fails or hangs (10 s) does not ignore."""
        values = {"ip": address}
        if failure.user:
            values["F-USER"] = failure.user
        argv = shell_command(self.config.settings.ignorecommand, values)
        done = await run_process(argv, timeout=IGNORECOMMAND_TIMEOUT)
        if done.problem is not None:
            log.error("[%s] ignorecommand for %s: %s", self.name, address, done.problem)
        self._ignore_answer = (address, failure, done.returncode == 0)

    # -- sources --------------------------------------------------------------------------

    def _date_of(self, line: str) -> float | None:
        return self.pipeline.date_of(line, self.clock())

    def make_sources(self) -> list[Any]:
        """The jail's sources, each resumed at its stored position or cursor after replaying
        the lines logged since ``now - findtime`` before it: failure windows are not stored,
        so every run counts each line of the last findtime once (see ``sources.base.Batch``)."""
        now = self.clock()
        since = now - self.config.settings.findtime
        source = self.config.source
        if self.source_kind == "systemd":
            from ..sources.journal import JournalSource

            cursor = self.store.get_cursor(self.name)
            path = source.journal_path
            self.files = [path] if path else list(source.journal_files) or ["journal"]
            return [JournalSource(list(source.journalmatch), cursor=cursor, since=since,
                                  path=path, files=source.journal_files,
                                  name=f"{self.name}:journal")]
        paths = [lp.path for lp in source.logpaths]
        self.files = paths
        positions: dict[str, Position] = {}
        for path in paths:
            for real in glob.glob(path) or [path]:
                stored = self.store.get_position(real)
                if stored is not None:
                    positions[real] = Position(stored.path, stored.inode, stored.offset,
                                               stored.head_hash)
        backend = "polling" if self.source_kind == "polling" else "auto"
        return [FileSource(paths, positions=positions, since=since, date_of=self._date_of,
                           backend=backend, name=self.name)]  # type: ignore[arg-type]

    def start(self) -> None:
        for source in self.make_sources():
            self.tasks.append(asyncio.create_task(self._run(source), name=f"jail:{self.name}"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []

    async def _run(self, source: Any) -> None:
        async with aclosing(source.events()) as events:
            async for event in events:
                if isinstance(event, SourceStatus):
                    self._note_status(event)
                    continue
                try:
                    await self.handle(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("[%s] failed to process a batch of %d line(s)", self.name,
                                  len(event.lines))

    def _note_status(self, status: SourceStatus) -> None:
        self.statuses[status.name] = status
        if status.state == "ok":
            log.info("[%s] reading %s", self.name, status.name)
        elif status.state == "missing":
            log.warning("[%s] %s does not exist (%s): this jail protects nothing from it until "
                        "it appears; watching for it", self.name, status.name, status.message)
        else:
            log.warning("[%s] %s: %s %s", self.name, status.name, status.state, status.message)

    # -- a batch through the pipeline --------------------------------------------------------

    async def handle(self, batch: Batch) -> None:
        now = self.clock()
        started = time.perf_counter()
        pipeline = self.pipeline
        # The batch's bans count for its later failures at once (as live, and as scan replays).
        book = ActiveBans(over=self.enforcer.active)
        replay = batch.position is None  # lines a stopped run read: rebuild its windows
        verbose = log.isEnabledFor(logging.INFO) and not replay
        for failure in pipeline.failures_of_lines(batch.lines, now):
            canon = canonical_address(failure.fid)
            addresses = [canon] if canon is not None else await self._resolve(failure.fid)
            for address in addresses:
                f = failure if address == failure.fid else replace(failure, fid=address)
                if replay and self._used_by_a_ban(address, f.time, now):
                    continue
                if self.config.settings.ignorecommand and not book.is_banned(address, self.name):
                    await self._ask_ignore_command(address, f)
                verdict = pipeline.judge(f, now, book)
                result = verdict.result
                if result.outcome is Outcome.IGNORED:
                    log.info("[%s] Ignore %s by %s", self.name, address, result.ignored_by)
                counted = not verdict.already_banned and result.outcome in (
                    Outcome.COUNTED, Outcome.BANNED)
                if counted and self.on_failure is not None:
                    self.on_failure(self.name, address, f.time)
                if verbose and counted:
                    self._log_found(address, f.time, now)
                if len(verdict.bans) > 1:
                    policy = self.config.subnets
                    log.log(NOTICE, "[%s] %d addresses of %s banned within %ds: banning the "
                            "subnet", self.name, policy.escalate_count, verdict.bans[1].address,
                            int(policy.escalate_period))
        self._note_forged(now)
        if self.on_batch is not None:
            self.on_batch(self, len(batch.lines), time.perf_counter() - started)
        if len(book):
            await self.enforcer.ban(list(book), now)
        self._save_position(batch)

    def _used_by_a_ban(self, address: str, when: float, now: float) -> bool:
        """A replayed failure dated at or before the address's last ban in this jail was
        used up by that ban (its window emptied when it was banned), even if the ban was
        lifted by hand since: counting it again would undo the unban."""
        prior = self.store.ban_count(address, self.name, now - self.history)
        last = prior.last_banned_at
        return prior.count > 0 and last is not None and when <= last

    def _log_found(self, address: str, when: float, now: float) -> None:
        """fail2ban's "Found" line per failure, up to FOUND_PER_WINDOW per window."""
        self.flush_found(now)
        if self._found_logged < FOUND_PER_WINDOW:
            self._found_logged += 1
            log.info("[%s] Found %s - %s", self.name, address,
                     datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S"))
        else:
            self._found_quiet += 1

    def flush_found(self, now: float) -> None:
        """Close the window when its time is over: say how many failures were not logged."""
        if now - self._found_since < FOUND_WINDOW:
            return
        if self._found_quiet:
            log.info("[%s] Found %d more failures in the last %ds (a flood: not logged one by "
                     "one)", self.name, self._found_quiet, int(now - self._found_since))
        self._found_since, self._found_logged, self._found_quiet = now, 0, 0

    def _note_forged(self, now: float) -> None:
        """Say, at most once a FOUND_WINDOW, how many lines were not read as forged: the
        client wrote a copy of the server's text with another address in it."""
        self._forged_quiet += self.pipeline.filter.take_forged_count()
        if self._forged_quiet and now - self._forged_since >= FOUND_WINDOW:
            log.warning("[%s] %d forged line(s) not read: the client's own text copies the "
                        "server's address field, and the filter read the copy or the line "
                        "cannot say which is the server's", self.name, self._forged_quiet)
            self._forged_since, self._forged_quiet = now, 0

    async def _resolve(self, fid: str) -> list[str]:
        """The addresses of a host name a failure named (``usedns``)."""
        if self.config.settings.usedns.value in ("no", "raw"):
            return []
        try:  # "3405803785", "0xcb.113.9": the C library reads these as addresses, no DNS
            socket.inet_aton(fid)
        except OSError:
            pass
        else:
            log.warning("[%s] %r is a number that resolves to an address without DNS: "
                        "not an address a server logs; ignored", self.name, fid)
            return []
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(fid, None), 5)
        except (OSError, TimeoutError):
            log.warning("[%s] cannot resolve %s", self.name, fid)
            return []
        out = []
        for info in infos:
            address = canonical_address(str(info[4][0]))
            if address is not None and address not in out:
                out.append(address)
        return out

    def _save_position(self, batch: Batch) -> None:
        """Remember where reading stopped -- only when every ban so far is in the store: with
        bans waiting for a full disk, a restart must read their lines again."""
        if not self.enforcer.durable:
            return
        pos = batch.position
        try:
            if isinstance(pos, Position):
                self.store.set_position(FilePosition(pos.path, pos.inode, pos.offset,
                                                     pos.first_line_hash))
            elif isinstance(pos, str):
                self.store.set_cursor(self.name, pos)
        except StoreError as exc:  # the next batch tries again; the lines are re-read if not
            log.warning("[%s] cannot save the read position: %s", self.name, exc)

    def status(self) -> dict[str, Any]:
        stats = self.pipeline.core.stats()
        banned = self.enforcer.banned_in(self.name)
        files = sorted({path for path in self.files for path in (glob.glob(path) or [path])})
        errors = [{"path": s.name, "message": f"{s.state}: {s.message}".strip(": ")}
                  for s in self.statuses.values() if s.state != "ok"]
        return {
            "jail": self.name,
            "currently_failed": stats.currently_failed,
            "total_failed": stats.total_failed,
            "currently_banned": len(banned),
            "total_banned": self.enforcer.total_banned.get(self.name, 0),
            "banned": sorted(b.address for b in banned),
            "files": files,
            "file_errors": errors,
            "backend": self.source_kind,
        }
