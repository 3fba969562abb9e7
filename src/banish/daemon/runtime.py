"""``banish run``: the daemon's lifecycle on one asyncio loop.

Owns start-up order (config -> log -> store -> firewall + restored bans -> jails -> control
socket -> ``READY=1``), the maintenance timer (expiry, retries, reconciliation, DNS refresh,
purge and compaction), signals (SIGTERM stops, SIGHUP reloads) and the answers to control
commands. Reload builds a whole new config first; if it is broken the daemon keeps the old one
and every ban.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..actions import registry
from ..actions.actiondef import ActionDefinition
from ..actions.base import Backend, JailFirewall
from ..actions.command import CommandActions
from ..addr import canonical_address
from ..config.loader import Config, DaemonSettings, JailConfig, load_config
from ..core.subnets import covering
from ..errors import ConfigError
from ..match.filter import CompiledFilter
from ..protocol import CommandError
from ..store.base import Ban
from ..store.sqlite import SqliteStore
from .enforcer import Enforcer
from .firewall import backend_name, command_definitions, firewall_for
from .jailrun import JailRunner
from .logsetup import NOTICE, setup_logging
from .notify import sd_notify

log = logging.getLogger("banish.server")

TICK = 1.0
RESOLVE_EVERY = 300.0
PURGE_EVERY = 3600.0
PURGE_SLICE = 10_000


def own_addresses() -> tuple[str, ...]:
    """This host's addresses, for ``ignoreself`` (never ban ourselves)."""
    found = {"127.0.0.1", "::1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    try:
        done = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, timeout=5,
                              check=False)
        for iface in json.loads(done.stdout or b"[]"):
            for addr in iface.get("addr_info", []):
                if addr.get("local"):
                    found.add(str(addr["local"]))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return tuple(sorted(found))


class Runtime:
    """The running daemon: jails, enforcer, store and control socket."""

    def __init__(self, config_dir: str, *, overrides: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config_dir = config_dir
        self.overrides = overrides or {}
        self.clock = clock
        self.config = self._load()
        self.settings = self.config.daemon
        self.store: SqliteStore | None = None
        self.enforcer: Enforcer | None = None
        self.runners: dict[str, JailRunner] = {}
        self.stopping = asyncio.Event()
        self.control: Any = None

    def _load(self) -> Config:
        config = load_config(self.config_dir)
        for jail in config.jails:  # a broken regex is a config error: refuse it up front
            try:
                CompiledFilter(jail.filter, logtimezone=jail.options.get("logtimezone") or None)
            except ConfigError as exc:
                raise exc.located(section=jail.name) from exc
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
        # The socket first: a second daemon started by mistake must stop here, before it
        # touches the store or the firewall of the running one.
        await self._start_control(settings)
        os.makedirs(os.path.dirname(os.path.abspath(settings.dbfile)), exist_ok=True)
        self.store = SqliteStore(settings.dbfile)
        backends = self._backends(self.config)
        self.enforcer = Enforcer(self.store, backends)
        await self.enforcer.start(self._firewalls(self.config), self._jail_backends(self.config),
                                  self.clock())
        for jail in self.config.jails:
            self._start_jail(jail)
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

    async def _start_control(self, settings: DaemonSettings) -> None:
        try:
            from .control import ControlServer
        except ImportError:  # pragma: no cover - control module absent in a partial build
            log.warning("control socket unavailable")
            return
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
        if self.enforcer is not None:
            await self.enforcer.stop()
        if self.store is not None:
            self.store.close()
        with contextlib.suppress(OSError):
            os.unlink(self.settings.pidfile)

    def _start_jail(self, jail: JailConfig) -> None:
        assert self.store is not None and self.enforcer is not None
        runner = JailRunner(jail, store=self.store, enforcer=self.enforcer, clock=self.clock,
                            history=self.settings.dbpurgeage, self_addresses=own_addresses())
        self.runners[jail.name] = runner
        runner.start()
        log.info("Jail %r started (%s)", jail.name, runner.source_kind)

    def _backends(self, config: Config) -> dict[str, Backend]:
        options = registry.BackendOptions(netns=os.environ.get("BANISH_NETNS") or None)
        names = {backend_name(j) for j in config.jails}
        backends = {name: registry.create(name, options) for name in names}
        _configure_scripts(backends, command_definitions(config))
        return backends

    @staticmethod
    def _jail_backends(config: Config) -> dict[str, str]:
        return {j.name: backend_name(j) for j in config.jails}

    @staticmethod
    def _firewalls(config: Config) -> list[JailFirewall]:
        return [firewall_for(j) for j in config.jails]

    async def _maintain(self) -> None:
        """Expiry every tick; retries, reconciliation, DNS refresh and purge less often."""
        assert self.enforcer is not None and self.store is not None
        last_reconcile = last_resolve = last_purge = self.clock()
        while True:
            await asyncio.sleep(TICK)
            now = self.clock()
            try:
                await self.enforcer.expire(now)
                await self.enforcer.retry_failed(now)
                for runner in self.runners.values():
                    runner.core.expire(now)
                if now - last_reconcile >= self.settings.reconcileinterval:
                    last_reconcile = now
                    await self.enforcer.reconcile(now)
                if now - last_resolve >= RESOLVE_EVERY:
                    last_resolve = now
                    await self._resolve_ignored(now)
                if now - last_purge >= PURGE_EVERY:
                    # In slices, so a big backlog never blocks the loop for long.
                    purged = self.store.purge(now - self.settings.dbpurgeage, limit=PURGE_SLICE)
                    if purged < PURGE_SLICE:
                        last_purge = now
                        self.store.compact()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("maintenance failed")

    async def _resolve_ignored(self, now: float) -> None:
        """Re-resolve ``ignoreip`` names, so a dynamic home address stays allowed."""
        loop = asyncio.get_running_loop()
        for runner in self.runners.values():
            for name in runner.core.names_to_resolve(now):
                try:
                    infos = await asyncio.wait_for(loop.getaddrinfo(name, None), 5)
                    addresses = {str(i[4][0]) for i in infos}
                except (OSError, TimeoutError):
                    addresses = None
                runner.core.update_resolved(name, addresses, now)

    # -- reload ---------------------------------------------------------------------------

    async def _reload_logged(self) -> None:
        try:
            await self.reload(None)
        except ConfigError as exc:
            log.error("Reload failed, keeping the running configuration: %s", exc)

    async def reload(self, jail: str | None) -> dict[str, Any]:
        """Re-read the config; swap in changed jails; keep bans of every jail that stays."""
        assert self.enforcer is not None
        new = self._load()  # raises ConfigError: nothing has changed yet
        scripts = command_definitions(new)  # action.d errors too, before anything changes
        if jail is not None and new.jail(jail) is None and jail not in self.runners:
            raise CommandError(f"no such jail: {jail}")
        old_names = set(self.runners)
        new_names = {j.name for j in new.jails}
        changed = [j for j in new.jails
                   if j.name in self.runners and self.runners[j.name].config != j]
        if jail is not None:
            changed = [j for j in changed if j.name == jail]
            new_names = (old_names - {jail}) | ({jail} if new.jail(jail) else set())
        now = self.clock()
        for name in old_names - new_names:
            await self.runners.pop(name).stop()
            keys = [b.key for b in self.enforcer.banned_in(name)]
            await self.enforcer.unban(keys, now, reason="jail removed")
        for j in changed:
            await self.runners.pop(j.name).stop()
        kept = [j for j in new.jails if j.name in new_names]
        self.config = replace(new, jails=tuple(kept))
        self.enforcer.jail_backend = self._jail_backends(self.config)
        for name in self._backends(self.config):
            if name not in self.enforcer.backends:
                backends = dict(self.enforcer.backends)
                backends[name] = registry.create(name, registry.BackendOptions(
                    netns=os.environ.get("BANISH_NETNS") or None))
                self.enforcer.backends = backends
        _configure_scripts(self.enforcer.backends, scripts)
        for name, backend in self.enforcer.backends.items():
            await backend.start([firewall_for(j) for j in kept if backend_name(j) == name])
        for j in kept:
            if j.name not in self.runners:
                self._start_jail(j)
        await self.enforcer.reconcile(now)
        if jail is None:
            self._apply_daemon_settings(new.daemon)
        log.info("Reloaded configuration (%d jail(s))", len(kept))
        return {"jails": sorted(self.runners)}

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

    # -- control commands -------------------------------------------------------------------

    def _runner(self, jail: str) -> JailRunner:
        runner = self.runners.get(jail)
        if runner is None:
            raise CommandError(f"no such jail: {jail!r} (jails: {', '.join(sorted(self.runners))})")
        return runner

    async def handle(self, cmd: str, args: dict[str, Any]) -> Any:
        method = getattr(self, f"cmd_{cmd}", None)
        if method is None:
            raise CommandError(f"unknown command {cmd!r}")
        return await method(**args)

    async def cmd_ping(self) -> str:
        return "pong"

    async def cmd_stop(self) -> str:
        asyncio.get_running_loop().call_soon(self.stopping.set)
        return "stopping"

    async def cmd_status(self, jail: str | None = None) -> dict[str, Any]:
        if jail is not None:
            return self._runner(jail).status()
        jails = [r.status() for r in self.runners.values()]
        summary = [{k: s[k] for k in ("jail", "currently_failed", "total_failed",
                                      "currently_banned", "total_banned")} for s in jails]
        return {"jails": sorted(self.runners), "jail_count": len(self.runners),
                "summary": summary}

    async def cmd_ban(self, jail: str, ips: list[str]) -> dict[str, Any]:
        assert self.enforcer is not None
        runner = self._runner(jail)
        now = self.clock()
        bantime = int(runner.config.settings.bantime)
        bans: list[Ban] = []
        for ip in ips:
            address = canonical_address(ip)
            if address is None:
                raise CommandError(f"not an IP address or network: {ip!r}")
            bans.append(Ban(address, jail, now, bantime))
        fresh = await self.enforcer.ban(bans, now)
        return {"banned": len(fresh), "already": len(bans) - len(fresh)}

    async def cmd_unban(self, ips: list[str] | None = None, jail: str | None = None,
                        all: bool = False) -> dict[str, Any]:
        assert self.enforcer is not None
        if jail is not None:
            self._runner(jail)
        active = self.enforcer.active
        if all:
            keys = [k for k in active if jail is None or k.jail == jail]
            found = await self.enforcer.unban(keys, self.clock())
            return {"unbanned": len(found), "not_banned": []}
        keys = []
        missing = []
        for ip in ips or []:
            address = canonical_address(ip)
            if address is None:
                raise CommandError(f"not an IP address or network: {ip!r}")
            hits = [k for k in active if k.address == address and (jail is None or k.jail == jail)]
            if not hits:
                inside = [(j, net) for j in ([jail] if jail else sorted(self.runners))
                          for net in covering(address, self.enforcer.networks(j))]
                if inside:
                    where = ", ".join(f"{net} (jail {j})" for j, net in inside)
                    raise CommandError(f"{ip} is not banned by itself but inside the banned "
                                       f"subnet {where}: unban that subnet to release it")
                missing.append(ip)
            keys.extend(hits)
        found = await self.enforcer.unban(keys, self.clock())
        return {"unbanned": len(found), "not_banned": missing}

    async def cmd_banned(self, ip: str | None = None, jail: str | None = None) -> list[dict[str, Any]]:
        assert self.enforcer is not None
        address = canonical_address(ip) if ip else None
        rows = []
        for ban in sorted(self.enforcer.active.values(), key=lambda b: (b.jail, b.address)):
            if address is not None and ban.address != address:
                continue
            if jail is not None and ban.jail != jail:
                continue
            rows.append({"jail": ban.jail, "ip": ban.address, "banned_at": ban.banned_at,
                         "expires_at": ban.expires_at, "bantime": ban.bantime})
        return rows

    async def cmd_reload(self, jail: str | None = None) -> dict[str, Any]:
        try:
            return await self.reload(jail)
        except ConfigError as exc:
            raise CommandError(f"reload refused, running configuration kept: {exc}") from exc

    async def cmd_get(self, jail: str, param: str) -> dict[str, Any]:
        runner = self._runner(jail)
        settings = runner.config.settings
        values: dict[str, Any] = {
            "maxretry": settings.maxretry, "findtime": settings.findtime,
            "bantime": settings.bantime, "backend": runner.source_kind,
            "logpath": [lp.path for lp in settings.logpath],
            "ignoreip": [str(n) for n in settings.ignoreip.networks] + list(settings.ignoreip.names),
            "failregex": list(runner.filter.definition.failregex),
            "ignoreregex": list(runner.filter.definition.ignoreregex),
            "maxlines": runner.filter.maxlines,
            "banned": runner.status()["banned"],
        }
        if param not in values:
            raise CommandError(f"unknown parameter {param!r} (known: {', '.join(sorted(values))})")
        return {"jail": jail, "param": param, "value": values[param]}

    async def cmd_set(self, jail: str, param: str, value: str) -> dict[str, Any]:
        runner = self._runner(jail)
        from ..config.values import parse_bantime, parse_int, parse_positive_duration

        settings = runner.config.settings
        try:
            if param == "maxretry":
                settings = replace(settings, maxretry=parse_int(value, "maxretry", minimum=1))
            elif param == "findtime":
                settings = replace(settings, findtime=parse_positive_duration(value, "findtime"))
            elif param == "bantime":
                settings = replace(settings, bantime=parse_bantime(value))
            else:
                raise CommandError(f"cannot set {param!r} at run time (maxretry, findtime, "
                                   "bantime can be set; edit the config and reload for others)")
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        runner.apply_settings(replace(runner.config, settings=settings))
        return {"jail": jail, "param": param, "value": value}


def _configure_scripts(backends: Mapping[str, Backend],
                       definitions: Mapping[str, Sequence[ActionDefinition]]) -> None:
    backend = backends.get(registry.COMMAND)
    if isinstance(backend, CommandActions):
        backend.configure(definitions)
