"""One running jail: its sources, its matcher and its core, wired in that order.

Owns turning a batch of log lines into ban decisions for one jail: the chunk matcher (with the
prefilter) finds failures, ``core.Jail`` counts them, decisions go to the ``Enforcer``; the
source's position is saved only after the batch's bans are committed, so a crash re-reads at
most one batch and never loses a reported ban. Must not: touch the firewall directly or read
the config files.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..actions.command import BanDetails, run_command
from ..actions.escape import shell_command
from ..addr import canonical_address
from ..config.loader import JailConfig
from ..core.events import Outcome
from ..core.jail import Jail
from ..core.subnets import ban_target, escalation
from ..events import Failure, LogLine
from ..match.chunks import ChunkMatcher
from ..match.dates import DateDetector
from ..match.filter import CompiledFilter
from ..sources.base import Batch, Position, SourceStatus
from ..sources.file import FileSource
from ..store.base import Ban, BanKey, FilePosition, Store
from .enforcer import Enforcer
from .logsetup import NOTICE

log = logging.getLogger("banish.filter")

Clock = Callable[[], float]


def _journal_available() -> bool:
    try:
        import importlib

        importlib.import_module("systemd.journal")
    except ImportError:
        return False
    return True


def choose_backend(jail: JailConfig) -> str:
    """``backend = auto``: files when a logpath exists, else the journal when it can be read."""
    backend = jail.settings.backend
    if backend != "auto":
        return "systemd" if backend.startswith("systemd") else backend
    for lp in jail.settings.logpath:
        if glob.glob(lp.path):
            return "auto"
    if jail.filter.journalmatch and _journal_available():
        return "systemd"
    return "auto"


IGNORECOMMAND_TIMEOUT = 10.0
"""Seconds an ``ignorecommand`` may take before it is killed (and does not ignore)."""


class JailRunner:
    """Sources -> matcher -> core -> enforcer for one jail."""

    def __init__(self, config: JailConfig, *, store: Store, enforcer: Enforcer, clock: Clock,
                 history: float, self_addresses: tuple[str, ...] = ()) -> None:
        self.config = config
        self.name = config.name
        self.store = store
        self.enforcer = enforcer
        self.clock = clock
        self.source_kind = choose_backend(config)
        definition = config.filter
        if self.source_kind == "systemd" and definition.logtype != "journal":
            # The journal gives the time; lines carry no date and the journal's prefix shape.
            from ..config.filterdef import load_filter

            config_dir = os.path.dirname(os.path.dirname(definition.file)) or None
            definition = load_filter(config_dir, definition.name,
                                     {**_args(config), "logtype": "journal"})
        tz = config.options.get("logtimezone") or None
        self.filter = CompiledFilter(definition, logtimezone=tz)
        self.matcher = ChunkMatcher(self.filter)
        self._dates = self.filter.dates if self.filter.dates.disabled else (
            DateDetector.from_pattern(definition.datepattern, logtimezone=tz)
            if definition.datepattern else DateDetector.auto(logtimezone=tz))
        self.self_addresses = self_addresses
        self.core = self._make_core(config)
        self.history = history
        self.statuses: dict[str, SourceStatus] = {}
        self._ignore_answer: tuple[str, Failure, bool] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.files: list[str] = []

    def _make_core(self, config: JailConfig) -> Jail:
        return Jail(config.settings, prior_bans=self._prior_bans,
                    self_addresses=self.self_addresses,
                    ignore_predicate=self._ignore_command if config.settings.ignorecommand
                    else None)

    def apply_settings(self, config: JailConfig) -> None:
        """New numbers (``banish set``): a fresh core; failure windows start over."""
        self.config = config
        self.core = self._make_core(config)

    # -- hooks for the core -------------------------------------------------------------------

    def _prior_bans(self, address: str, jail: str | None) -> Any:
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
        done = await run_command(argv, IGNORECOMMAND_TIMEOUT)
        if done.problem is not None:
            log.error("[%s] ignorecommand for %s: %s", self.name, address, done.problem)
        self._ignore_answer = (address, failure, done.returncode == 0)

    # -- sources --------------------------------------------------------------------------

    def _date_of(self, line: str) -> float | None:
        hit = self._dates.find(line, self.clock())
        return None if hit is None else hit.time

    def make_sources(self) -> list[Any]:
        now = self.clock()
        since = now - self.config.settings.findtime
        if self.source_kind == "systemd":
            from ..config.filterdef import split_name_args
            from ..sources.journal import JournalSource

            matches = [" ".join(m) for m in self.config.filter.journalmatch]
            cursor = self.store.get_cursor(self.name)
            # fail2ban's backend options: systemd[journalpath=DIR] or [journalfiles=A B].
            _, opts = split_name_args(self.config.settings.backend)
            files = tuple(opts.get("journalfiles", "").split())
            path = opts.get("journalpath") or None
            self.files = [path] if path else list(files) or ["journal"]
            return [JournalSource(matches, cursor=cursor, since=None if cursor else since,
                                  path=path, files=files, name=f"{self.name}:journal")]
        paths = [lp.path for lp in self.config.settings.logpath]
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
        else:
            log.warning("[%s] %s: %s %s", self.name, status.name, status.state, status.message)

    # -- the pipeline ----------------------------------------------------------------------

    def failures_in(self, lines: tuple[LogLine, ...], now: float) -> list[Failure]:
        found: list[Failure] = []
        if not lines:
            return found
        if lines[0].time is not None or self.filter.journal:
            for line in lines:
                hit = self.filter.process(line.text, now, time=line.time).failure
                if hit is not None and hit.fid is not None:
                    found.append(hit.to_failure(now))
            return found
        chunk = "\n".join(line.text for line in lines).encode("utf-8", "replace") + b"\n"
        for outcome in self.matcher.feed(chunk, now):
            hit = outcome.result.failure
            if hit is not None and hit.fid is not None:
                found.append(hit.to_failure(now))
        return found

    async def handle(self, batch: Batch) -> None:
        now = self.clock()
        bans: list[Ban] = []
        details: dict[BanKey, BanDetails] = {}
        verbose = log.isEnabledFor(logging.INFO)
        for failure in self.failures_in(batch.lines, now):
            canon = canonical_address(failure.fid)
            addresses = [canon] if canon is not None else await self._resolve(failure.fid)
            for address in addresses:
                f = failure if address == failure.fid else replace(failure, fid=address)
                if self.enforcer.is_banned(address, self.name):
                    continue
                if self.config.settings.ignorecommand:
                    await self._ask_ignore_command(address, f)
                result = self.core.feed(f, now)
                if result.outcome is Outcome.IGNORED:
                    log.info("[%s] Ignore %s by %s", self.name, address, result.ignored_by)
                if verbose and result.outcome in (Outcome.COUNTED, Outcome.BANNED):
                    log.info("[%s] Found %s - %s", self.name, address,
                             datetime.fromtimestamp(f.time).strftime("%Y-%m-%d %H:%M:%S"))
                decision = result.decision
                if decision is not None:
                    target = ban_target(decision.address, self.config.subnets)
                    bans.append(Ban(target, self.name, decision.time,
                                    int(decision.bantime), decision.failures,
                                    tuple(decision.matches)))
                    details[BanKey(target, self.name)] = BanDetails(
                        time=decision.time, bantime=int(decision.bantime),
                        failures=decision.failures, bancount=decision.ban_count,
                        matches=tuple(decision.matches), fields=decision.fields,
                        fid=failure.fid)
        if bans:
            fresh = await self.enforcer.ban(bans, now, details)
            if fresh and self.config.subnets.escalates:
                await self._escalate(fresh, now)
        self._save_position(batch)

    async def _escalate(self, fresh: list[Ban], now: float) -> None:
        """Ban a whole subnet once enough of its addresses were banned (``escalate``)."""
        policy = self.config.subnets
        for ban in fresh:
            active = [(b.address, b.banned_at) for b in self.enforcer.banned_in(self.name)]
            subnet = escalation(ban.address, active, policy, now)
            if subnet is None:
                continue
            log.log(NOTICE, "[%s] %d addresses of %s banned within %ds: banning the subnet",
                    self.name, policy.escalate_count, subnet, int(policy.escalate_period))
            await self.enforcer.ban([Ban(subnet, self.name, now,
                                         int(self.config.settings.bantime))], now)

    async def _resolve(self, fid: str) -> list[str]:
        """The addresses of a host name a failure named (``usedns``)."""
        if self.config.settings.usedns.value in ("no", "raw"):
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
        pos = batch.position
        if isinstance(pos, Position):
            self.store.set_position(FilePosition(pos.path, pos.inode, pos.offset,
                                                 pos.first_line_hash))
        elif isinstance(pos, str):
            self.store.set_cursor(self.name, pos)

    def status(self) -> dict[str, Any]:
        stats = self.core.stats()
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


def _args(config: JailConfig) -> dict[str, str]:
    from ..config.filterdef import split_name_args

    spec = config.settings.filter
    return split_name_args(spec)[1] if "[" in spec else {}
