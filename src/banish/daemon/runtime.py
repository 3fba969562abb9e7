"""``banish run``: the daemon's lifecycle on one asyncio loop.

Owns start-up order (config -> log -> store -> event stream and its subscribers -> firewall +
restored bans -> jails -> control socket -> ``READY=1``), the maintenance timer (expiry,
retries, reconciliation, DNS refresh, purge and compaction), signals (SIGTERM stops, SIGHUP
reloads) and reload. A jail that cannot be compiled is skipped with its error and the others
run (``status`` lists it); reload compiles every changed jail before anything stops, keeps a
running jail whose new version is broken, and goes through the enforcer's own error handling.
The answers to control commands live in ``daemon/answers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from .. import __version__
from ..actions import registry
from ..actions.base import Backend
from ..actions.command import CommandActions
from ..config.friends import FriendsConfig
from ..config.loader import Config, DaemonSettings, JailConfig, SkippedJail, load_config
from ..config.model import FriendsOnly, JailFirewall
from ..errors import ConfigError
from ..events import BanEvent, EventKind
from ..notify.subscriber import Notifications
from ..store.base import StoreError
from ..store.sqlite import SqliteStore
from .answers import Answers, CommandError
from .enforcer import Enforcer
from .fleet import FleetSync
from .friends import allow_of, guard, names_in_use, services, session_of
from .hostaddrs import own_addresses
from .insight import Insight
from .jailrun import JailRunner
from .logsetup import NOTICE, setup_logging
from .notify import sd_notify
from .resolver import Resolver
from .scripts import ScriptSubscriber
from .stream import EventStream

__all__ = ["CommandError", "Runtime", "own_addresses"]

log = logging.getLogger("banish.server")

TICK = 1.0
PURGE_EVERY = 3600.0
PURGE_SLICE = 10_000
DRAIN_AT_STOP = 10.0
"""Seconds subscribers get at shutdown to finish what they were given (scripts' unbans...)."""


class Runtime(Answers):
    """The running daemon: jails, enforcer, event stream, store and control socket."""

    def __init__(self, config_dir: str, *, overrides: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time, i_know: bool = False) -> None:
        self.config_dir = config_dir
        self.overrides = overrides or {}
        self.clock = clock
        self.config = self._load()
        self.settings = self.config.daemon
        self.store: SqliteStore | None = None
        self.stream = EventStream()
        self.enforcer: Enforcer | None = None
        self.scripts: ScriptSubscriber | None = None
        self.runners: dict[str, JailRunner] = {}
        self.skipped: dict[str, str] = {}
        """Jail -> why it does not run (or, after a refused reload, still runs the old way)."""
        self.stopping = asyncio.Event()
        self.control: Any = None
        self._self_addresses: tuple[str, ...] = ()
        self.resolver = Resolver(self.settings.ignoreresolve)
        self.fleet: FleetSync | None = None
        self.notify: Notifications | None = None
        """The native notification actions (banish-mail...; notify/subscriber.py)."""
        self.insight: Insight | None = None
        """Enrichment and metrics subscribers (daemon/insight.py)."""
        self.friends = self.config.friends
        self._i_know = i_know

    def _load(self) -> Config:
        config = load_config(self.config_dir)
        daemon = config.daemon
        o = self.overrides
        daemon = replace(daemon, socket=o.get("socket") or daemon.socket,
                         dbfile=o.get("dbfile") or daemon.dbfile,
                         logtarget=o.get("logtarget") or daemon.logtarget,
                         pidfile=o.get("pidfile") or daemon.pidfile)
        return replace(config, daemon=daemon)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> int:
        settings = self.settings
        setup_logging(settings.logtarget, settings.loglevel)
        log.info("Starting banish with %s (%d jail(s))", self.config_dir, len(self.config.jails))
        for warning in self.config.warnings:
            log.warning("%s", warning)
        # The socket first: a second daemon started by mistake must stop here, before it
        # touches the store or the firewall of the running one.
        await self._start_control(settings)
        os.makedirs(os.path.dirname(os.path.abspath(settings.dbfile)), exist_ok=True)
        self.store = SqliteStore(settings.dbfile)
        self._self_addresses = own_addresses()
        self.enforcer = Enforcer(self.store, self._create_backend, self.stream)
        self.scripts = ScriptSubscriber(
            CommandActions(netns=os.environ.get("BANISH_NETNS") or None),
            lambda: list(self.enforcer.active) if self.enforcer else [], self.clock)
        self.scripts.subscribe(self.stream)
        self.insight = Insight(self)
        if settings.fleet is not None:
            self.fleet = FleetSync(
                settings.fleet, store=self.store, enforcer=self.enforcer,
                jails=lambda: {n: r.config for n, r in self.runners.items()},
                ignored=self._ignored, clock=self.clock, version=__version__)
            self.fleet.subscribe(self.stream)
            self.enforcer.share = self.fleet.share
            self.enforcer.shared = self.fleet.wake
        runners = self._compile(self.config.jails, self.config.skipped)
        if self.skipped and not runners:
            reasons = list(self.skipped.values())
            log.error("No jail could start: %s", "; ".join(reasons))
            await self._shutdown()
            raise ConfigError(reasons[0] if len(reasons) == 1 else
                              f"no jail could start ({len(reasons)} skipped): {reasons[0]}; ...")
        await self._resolve_new(runners, self.friends)
        try:  # banish run typed in an SSH session: do not cut it off (unless told so)
            if not self._i_know:
                guard(self._services(), (), self.friends, session_of(os.environ))
        except ConfigError:
            await self._shutdown()
            raise
        self.scripts.configure({n: r.config.actions for n, r in runners.items()})
        self.notify = Notifications(self.store, self.clock)
        await self.notify.configure(self.stream, [a for r in runners.values() for a in r.config.notify])
        self.stream.publish(BanEvent(EventKind.RELOAD, self.clock(), jails=tuple(runners)))
        await self.enforcer.start(self._firewalls(runners), self.clock(), self._services())
        for runner in runners.values():
            self._start_runner(runner)
        if self.fleet is not None:
            self.fleet.start()
        self._write_pidfile(settings)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload_logged()))
        sd_notify("READY=1")
        log.log(NOTICE, "banish is ready")
        maintenance = asyncio.create_task(self._maintain())
        await self.stopping.wait()
        sd_notify("STOPPING=1")
        log.info("Stopping banish")
        maintenance.cancel()
        await self._shutdown()
        return 0

    def _compile(self, jails: tuple[JailConfig, ...], skipped: tuple[SkippedJail, ...]
                 ) -> dict[str, JailRunner]:
        """A runner per jail that compiles; the others are skipped with their reason."""
        assert self.store is not None and self.enforcer is not None
        runners: dict[str, JailRunner] = {}
        for s in skipped:
            self._skip(s.name, s.error)
        for jail in jails:
            try:
                runners[jail.name] = JailRunner(
                    jail, store=self.store, enforcer=self.enforcer, clock=self.clock,
                    history=self.settings.dbpurgeage, self_addresses=self._self_addresses)
            except ConfigError as exc:
                self._skip(jail.name, exc.located(file=jail.file, section=jail.name))
        return runners

    def _skip(self, name: str, error: ConfigError) -> None:
        log.error("Jail %r skipped: %s", name, error)
        self.skipped[name] = str(error)

    def _ignored(self, jail: str, address: str) -> bool:
        """This node's own ignore rules for ``address`` in ``jail`` (a fleet ban never locks
        out a node's owner)."""
        runner = self.runners.get(jail)
        return runner is not None and runner.core.ignores.check(address) is not None

    def _start_runner(self, runner: JailRunner) -> None:
        fleet_counts = (runner.config.settings.fleetmaxretry is not None
                        and runner.config.settings.fleet != "off")
        if self.fleet is not None and fleet_counts:
            runner.on_failure = self.fleet.note_failure
        self.runners[runner.name] = runner
        if self.insight is not None:
            self.insight.watch(runner)
        runner.start()
        log.info("Jail %r started (%s)", runner.name, runner.source_kind)

    def _create_backend(self, name: str) -> Backend:
        options = registry.BackendOptions(netns=os.environ.get("BANISH_NETNS") or None)
        backend = registry.create(name, options)
        return self.insight.instrument(name, backend) if self.insight is not None else backend

    def _firewalls(self, runners: Mapping[str, JailRunner]
                   ) -> dict[str, tuple[str | None, JailFirewall]]:
        return {name: (r.config.backend, allow_of(r.config, self.resolver))
                for name, r in runners.items()}

    def _services(self, friends: tuple[FriendsConfig, ...] | None = None
                  ) -> tuple[FriendsOnly, ...]:
        return services(self.friends if friends is None else friends, self.resolver)

    async def _resolve_new(self, runners: Mapping[str, JailRunner],
                           friends: tuple[FriendsConfig, ...]) -> None:
        """Track the names these jails and services use; look up the new ones now (a friend
        must be allowed from the first transaction on) and tell the jails' cores."""
        new = self.resolver.track(names_in_use((r.config for r in runners.values()), friends))
        await self.resolver.refresh(self.clock(), new)
        self._tell_cores(runners.values())

    async def _apply_allow_lists(self) -> None:
        """The kernel's allow sets and friends-only services as the jails and names say now."""
        assert self.enforcer is not None
        await self.enforcer.configure(self._firewalls(self.runners), self.clock(),
                                      self._services())

    def _tell_cores(self, runners: Iterable[JailRunner]) -> None:
        now = self.clock()
        for runner in runners:
            for name in runner.config.settings.ignoreip.names:
                addresses = self.resolver.addresses(name)
                runner.core.update_resolved(name, addresses or None, now)

    async def _start_control(self, settings: DaemonSettings) -> None:
        from .control import ControlServer

        self.control = ControlServer(settings.socket, self)
        await self.control.start()

    def _write_pidfile(self, settings: DaemonSettings) -> None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(settings.pidfile)), exist_ok=True)
            with open(settings.pidfile, "w", encoding="ascii") as fh:
                fh.write(f"{os.getpid()}\n")
        except OSError as exc:
            log.warning("cannot write pid file %s: %s", settings.pidfile, exc)

    async def _shutdown(self) -> None:
        for runner in self.runners.values():
            await runner.stop()
        if self.control is not None:
            await self.control.close()
        if not await self.stream.drain(DRAIN_AT_STOP):
            log.warning("subscribers still busy after %.0fs: stopping them", DRAIN_AT_STOP)
        await self.stream.close()
        if self.notify is not None:
            await self.notify.stop()
        if self.insight is not None:
            await self.insight.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.scripts is not None:
            await self.scripts.stop()
        if self.enforcer is not None:
            await self.enforcer.stop()
        if self.store is not None:
            self.store.close()
        with contextlib.suppress(OSError):
            os.unlink(self.settings.pidfile)

    async def _maintain(self) -> None:
        """Expiry every tick; retries, reconciliation, DNS refresh and purge less often."""
        assert self.enforcer is not None and self.store is not None
        last_reconcile = last_purge = self.clock()
        last_store_error = ""
        while True:
            await asyncio.sleep(TICK)
            now = self.clock()
            try:
                await self.enforcer.write_unsaved()
                await self.enforcer.expire(now)
                await self.enforcer.retry_failed(now)
                for runner in self.runners.values():
                    runner.core.expire(now)
                    runner.flush_found(now)
                if now - last_reconcile >= self.settings.reconcileinterval:
                    last_reconcile = now
                    await self.enforcer.reconcile(now)
                    if self.scripts is not None and self.scripts.subscription is not None:
                        self.scripts.subscription.request_resync()
                if await self.resolver.refresh(now):  # a name stands for new addresses
                    self._tell_cores(self.runners.values())
                    await self._apply_allow_lists()
                if now - last_purge >= PURGE_EVERY:
                    # In slices, so a big backlog never blocks the loop for long.
                    purged = self.store.purge(now - self.settings.dbpurgeage, limit=PURGE_SLICE)
                    if purged < PURGE_SLICE:
                        last_purge = now
                        self.store.compact()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:  # a full disk: said once, not every second
                if str(exc) != last_store_error:
                    log.error("maintenance: the store cannot be written: %s", exc)
                last_store_error = str(exc)
            except Exception:
                log.exception("maintenance failed")
            else:
                last_store_error = ""

    # -- reload ---------------------------------------------------------------------------

    async def _reload_logged(self) -> None:
        try:
            await self.reload(None)
        except ConfigError as exc:
            log.error("Reload failed, keeping the running configuration: %s", exc)

    async def reload(self, jail: str | None, *, unban: bool = False,
                     session: tuple[str, int] | None = None, i_know: bool = False
                     ) -> dict[str, Any]:
        """Re-read the config; swap in changed jails; keep bans of every jail that stays.

        Everything new is compiled before anything stops: a jail whose new version is broken
        keeps running the old way (``status`` says why), one that is gone from the config is
        stopped and its bans lifted. ``unban`` lifts every ban (of ``jail`` when given) once
        the new configuration is known to load (``reload --unban``).
        """
        assert self.enforcer is not None
        new = self._load()  # raises ConfigError (daemon settings): nothing has changed yet
        known = {j.name for j in new.jails} | {s.name for s in new.skipped}
        if jail is not None and jail not in known and jail not in self.runners:
            raise CommandError(f"no such jail: {jail}")
        now = self.clock()
        broken = {s.name: s.error for s in new.skipped}
        wanted = {j.name: j for j in new.jails}
        if jail is not None:  # only that jail changes; the others stay as they run
            wanted = {n: r.config for n, r in self.runners.items() if n != jail} | (
                {jail: wanted[jail]} if jail in wanted else {})
            broken = {jail: broken[jail]} if jail in broken else {}
        fresh: dict[str, JailRunner] = {}
        for name, config in wanted.items():
            running = self.runners.get(name)
            if running is not None and running.config == config:
                continue
            assert self.store is not None
            try:
                fresh[name] = JailRunner(
                    config, store=self.store, enforcer=self.enforcer, clock=self.clock,
                    history=self.settings.dbpurgeage, self_addresses=self._self_addresses)
            except ConfigError as exc:
                broken[name] = exc.located(file=config.file, section=name)
        friends = new.friends if jail is None else self.friends
        await self._resolve_new({**self.runners, **fresh}, friends)
        if not i_know:  # a new or changed friends-only service must not cut off the caller
            guard(self._services(friends), self.friends, friends, session)
        removed = [n for n in self.runners if n not in wanted and n not in broken]
        self.skipped = {n: r for n, r in self.skipped.items() if n in broken}
        for name, error in broken.items():
            kept = " (still running its previous configuration)" if name in self.runners else ""
            log.error("Jail %r: %s%s", name, error, kept)
            self.skipped[name] = str(error) + kept
        # From here on nothing can fail for configuration reasons.
        if unban:  # every ban, or the named jail's
            keys = [b.key for b in self.enforcer.active if jail is None or b.jail == jail]
            await self.enforcer.unban(keys, now, reason="reload")
        for name in removed:
            await self.runners.pop(name).stop()
            keys = [b.key for b in self.enforcer.banned_in(name)]
            await self.enforcer.unban(keys, now, reason="jail removed")
        for name in fresh:
            old = self.runners.pop(name, None)
            if old is not None:
                await old.stop()
        final = {**self.runners, **fresh}
        if self.scripts is not None:
            self.scripts.configure({n: r.config.actions for n, r in final.items()})
        if self.notify is not None:
            await self.notify.configure(self.stream, [a for r in final.values() for a in r.config.notify])
        self.friends = friends
        await self.enforcer.configure(self._firewalls(final), now, self._services())
        self.stream.publish(BanEvent(EventKind.RELOAD, now, jails=tuple(sorted(final))))
        for runner in fresh.values():
            self._start_runner(runner)
        if jail is None:
            self._apply_daemon_settings(new.daemon)
            self.config = new
        log.info("Reloaded configuration (%d jail(s))", len(self.runners))
        return {"jails": sorted(self.runners),
                "skipped": [{"jail": n, "error": e} for n, e in sorted(self.skipped.items())]}

    def _apply_daemon_settings(self, new: DaemonSettings) -> None:
        """A full reload applies the log target and level, the purge age and the reconcile
        interval now; the socket, pid file and database stay until a restart (moving them
        under running clients and a live store would lose both), which the log says."""
        old = self.settings
        if (new.logtarget, new.loglevel) != (old.logtarget, old.loglevel):
            setup_logging(new.logtarget, new.loglevel)
            log.info("Logging to %s at level %s", new.logtarget, new.loglevel)
        for name in ("socket", "pidfile", "dbfile"):
            if getattr(new, name) != getattr(old, name):
                log.warning("%s changed to %s: takes effect at the next start (still %s)",
                            name, getattr(new, name), getattr(old, name))
        self.settings = replace(new, socket=old.socket, pidfile=old.pidfile, dbfile=old.dbfile)
        self.resolver.interval = new.ignoreresolve
