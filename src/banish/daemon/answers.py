"""The daemon's answers to control commands (``banish status``, ``ban``, ``get`` ...).

Owns turning a checked command (``protocol.py`` validated it) into a result from the running
daemon's state, and refusing with a one-line ``CommandError``. Must not parse wire bytes
(``control.py``) or change configuration beyond what a command names (``set``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..addr import canonical_address
from ..config.model import IgnoreIP, JailSettings
from ..config.values import parse_bantime, parse_ignoreip, parse_int, parse_positive_duration
from ..core.subnets import covering
from ..errors import ConfigError
from ..events import Ban, BanKey
from ..protocol import CommandError
from .fleet import BY_HAND
from .friends import session_of
from .logsetup import NOTICE

if TYPE_CHECKING:
    from ..config.friends import FriendsConfig
    from ..config.loader import Config, DaemonSettings
    from ..notify.subscriber import Notifications
    from .enforcer import Enforcer
    from .fleet import FleetSync
    from .jailrun import JailRunner
    from .resolver import Resolver
    from .stream import EventStream

__all__ = ["LOG_LEVELS", "Answers", "CommandError"]

log = logging.getLogger("banish.server")
T = TypeVar("T")


class Answers:
    """The ``cmd_*`` methods of the runtime (a mixin: the state is the runtime's)."""

    config: Config
    settings: DaemonSettings
    enforcer: Enforcer | None
    runners: dict[str, JailRunner]
    skipped: dict[str, str]
    stream: EventStream
    stopping: asyncio.Event
    friends: tuple[FriendsConfig, ...]
    resolver: Resolver
    fleet: FleetSync | None
    notify: Notifications | None

    clock: Callable[[], float]

    async def reload(self, jail: str | None, *, unban: bool = False,
                     session: tuple[str, int] | None = None, i_know: bool = False
                     ) -> dict[str, Any]:
        raise NotImplementedError

    async def _resolve_new(self, runners: Mapping[str, JailRunner],
                           friends: tuple[FriendsConfig, ...]) -> None:
        raise NotImplementedError

    async def _apply_allow_lists(self) -> None:
        raise NotImplementedError

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

    async def cmd_metrics(self) -> str:
        insight = getattr(self, "insight", None)  # daemon/insight.py, set by the runtime
        if insight is None:
            raise CommandError("metrics are not running yet")
        return str(insight.text())

    async def cmd_stop(self) -> str:
        asyncio.get_running_loop().call_soon(self.stopping.set)
        return "stopping"

    async def cmd_status(self, jail: str | None = None, fleet: bool = False) -> dict[str, Any]:
        if fleet:
            if self.fleet is None:
                raise CommandError("no fleet: banish.conf has no [fleet] section")
            return {"fleet": await self.fleet.fresh_status()}
        if jail is not None:
            if jail in self.skipped and jail not in self.runners:
                raise CommandError(f"jail {jail!r} does not run: {self.skipped[jail]}")
            status = self._runner(jail).status()
            if jail in self.skipped:
                status["reload_error"] = self.skipped[jail]
            return status
        jails = [r.status() for r in self.runners.values()]
        summary = [{k: s[k] for k in ("jail", "currently_failed", "total_failed",
                                      "currently_banned", "total_banned")} for s in jails]
        assert self.enforcer is not None
        return {"jails": sorted(self.runners), "jail_count": len(self.runners),
                "summary": summary,
                "skipped": [{"jail": n, "error": e} for n, e in sorted(self.skipped.items())],
                "firewall_errors": [{"backend": n, "error": e}
                                    for n, e in sorted(self.enforcer.firewall_errors.items())],
                "failed_bans": len(self.enforcer.failed),
                "store_backlog": len(self.enforcer.unsaved),
                "file_errors": [{"jail": s["jail"], **e} for s in jails
                                for e in s["file_errors"]],
                "store_error": self.enforcer.store_error,
                "subscribers": self.stream.status(),
                "notifications": self.notify.status() if self.notify is not None else [],
                "friends": [{"name": f.name, "ports": [list(p) if isinstance(p, tuple) else p
                                                       for p in f.ports],
                             "protocol": f.protocol,
                             "friends": [str(n) for n in f.friends.networks]
                             + list(f.friends.names)} for f in self.friends],
                "names": self.resolver.status()}

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
            keys = [k for k in active.ban_keys() if jail is None or k.jail == jail]
            found = await self.enforcer.unban(keys, self.clock(), reason=BY_HAND)
            return {"unbanned": len(found), "not_banned": [], **self._fleet_wide(found)}
        keys = []
        missing = []
        # Look-ups by key, jail by jail: a list of 1,000 addresses against 40,000 bans took
        # 67 s when every address scanned every ban.
        jails = [jail] if jail is not None else sorted({b.jail for b in active})
        for ip in ips or []:
            address = canonical_address(ip)
            if address is None:
                raise CommandError(f"not an IP address or network: {ip!r}")
            hits = [key for j in jails if (key := BanKey(address, j)) in active]
            if not hits:
                inside = [(j, net) for j in ([jail] if jail else sorted(self.runners))
                          for net in covering(address, self.enforcer.networks(j))]
                if inside:
                    where = ", ".join(f"{net} (jail {j})" for j, net in inside)
                    raise CommandError(f"{ip} is not banned by itself but inside the banned "
                                       f"subnet {where}: unban that subnet to release it")
                missing.append(ip)
            keys.extend(hits)
        found = await self.enforcer.unban(keys, self.clock(), reason=BY_HAND)
        return {"unbanned": len(found), "not_banned": missing, **self._fleet_wide(found)}

    def _fleet_wide(self, found: list[Ban]) -> dict[str, int]:
        """How many of the lifted bans the fleet lifts on every node too (their jail is in
        the fleet): the admin is told, not surprised."""
        if self.fleet is None:
            return {}
        shared = sum(1 for b in found if (r := self.runners.get(b.jail)) is not None
                     and r.config.settings.fleet != "off")
        return {"fleet_wide": shared} if shared else {}

    async def cmd_banned(self, ip: str | None = None, jail: str | None = None) -> list[dict[str, Any]]:
        assert self.enforcer is not None
        address = canonical_address(ip) if ip else None
        rows = []
        for ban in sorted(self.enforcer.active, key=lambda b: (b.jail, b.address)):
            if address is not None and ban.address != address:
                continue
            if jail is not None and ban.jail != jail:
                continue
            rows.append({"jail": ban.jail, "ip": ban.address, "banned_at": ban.banned_at,
                         "expires_at": ban.expires_at, "bantime": ban.bantime,
                         "origin": ban.origin})
        if jail is not None and not rows and jail not in self.skipped:
            self._runner(jail)  # a mistyped jail is an error, not "no bans" (fail2ban's too)
        return rows

    async def cmd_reload(self, jail: str | None = None, unban: bool = False,
                         i_know: bool = False, session: str | None = None) -> dict[str, Any]:
        """fail2ban's ``reload [--unban] [JAIL]``: with a jail, --unban lifts only its bans;
        a refused reload lifts nothing. ``session`` is the caller's SSH_CONNECTION, which a
        new friends-only service must not cut off unless ``i_know``."""
        try:
            return await self.reload(jail, unban=unban, i_know=i_know,
                                     session=session_of({"SSH_CONNECTION": session or "",
                                                         "SSH_CLIENT": session or ""}))
        except ConfigError as exc:
            raise CommandError(f"reload refused, running configuration kept: {exc}") from exc

    async def cmd_get(self, jail: str | None, param: str) -> dict[str, Any]:
        """A setting of a jail, or of the daemon without one. Whole numbers come back as
        integers (600, not 600.0), so ``--json`` and the printed value agree with what
        fail2ban-client prints."""
        values = self._daemon_values() if jail is None else _jail_values(self._runner(jail))
        if param not in values:
            what = "daemon setting" if jail is None else "parameter"
            raise CommandError(f"unknown {what} {param!r} (known: {', '.join(sorted(values))})")
        return {"jail": jail, "param": param, "value": _whole(values[param]())}

    async def cmd_set(self, jail: str | None, param: str, value: str) -> dict[str, Any]:
        """Change a setting until the next reload; the answer is the value as ``get`` now
        shows it (``bantime 1h`` answers 3600; ``addignoreip`` the whole list)."""
        if jail is None:
            if param != "loglevel":
                raise CommandError(f"cannot set {param!r} at run time (only loglevel; edit "
                                   "banish.conf and reload for others)")
            self._set_loglevel(value)
            shown = param
        elif param in ("addignoreip", "delignoreip"):
            await self._change_ignoreip(self._runner(jail), value, add=param == "addignoreip")
            shown = "ignoreip"
        else:
            runner = self._runner(jail)
            runner.apply_settings(replace(runner.config,
                                          settings=_new_settings(runner.config.settings, param,
                                                                 value)))
            shown = param
        answer = await self.cmd_get(jail, shown)
        return {**answer, "param": param}

    def _daemon_values(self) -> dict[str, Callable[[], Any]]:
        s = self.settings
        return {"loglevel": lambda: s.loglevel, "logtarget": lambda: s.logtarget,
                "dbfile": lambda: s.dbfile, "dbpurgeage": lambda: s.dbpurgeage}

    def _set_loglevel(self, value: str) -> None:
        """fail2ban's ``set loglevel``: the ``banish`` loggers' level now; the next reload
        goes back to banish.conf's (``_apply_daemon_settings`` sees the difference)."""
        name, level = _log_level(value)
        logging.getLogger("banish").setLevel(level)
        self.settings = replace(self.settings, loglevel=name)
        log.log(NOTICE, "Log level set to %s (until the next reload)", name)

    async def _change_ignoreip(self, runner: JailRunner, value: str, *, add: bool) -> None:
        """fail2ban's ``addignoreip``/``delignoreip``: the jail's ignore list and its kernel
        allow set (one transaction), with failure windows kept (``apply_settings`` would start
        them over). The config the runner holds changes too: ``get ignoreip`` shows the list,
        a later ``set`` keeps it, and a reload (config differs from the file) goes back to the
        file's list."""
        verb = "addignoreip" if add else "delignoreip"
        try:
            given = parse_ignoreip(value, verb)
        except ConfigError as exc:
            raise CommandError(f"set {runner.name} {exc}") from exc
        if not given:
            raise CommandError(f"set {runner.name} {verb}: give addresses, networks or host "
                               "names")
        now = runner.config.settings.ignoreip
        if add:
            updated = IgnoreIP(_union(now.networks, given.networks), _union(now.names, given.names))
        else:
            listed = {n.lower() for n in now.names}
            missing = [str(n) for n in given.networks if n not in now.networks]
            missing += [n for n in given.names if n.lower() not in listed]
            if missing:
                raise CommandError(f"set {runner.name} delignoreip: not in the jail's ignore "
                                   f"list: {', '.join(missing)}")
            drop = {n.lower() for n in given.names}
            updated = IgnoreIP(tuple(n for n in now.networks if n not in given.networks),
                               tuple(n for n in now.names if n.lower() not in drop))
        runner.config = replace(runner.config,
                                settings=replace(runner.config.settings, ignoreip=updated),
                                firewall=replace(runner.config.jail_firewall,
                                                 allow=updated.networks))
        runner.core.ignores.set_ignoreip(updated)
        await self._resolve_new(self.runners, self.friends)  # new names: looked up now
        await self._apply_allow_lists()  # and the kernel's allow set follows


def _jail_values(runner: JailRunner) -> dict[str, Callable[[], Any]]:
    """``get JAIL PARAM``: each value computed only when asked for (``banned`` reads the
    enforcer, ``logpath`` nothing but the config)."""
    config, settings = runner.config, runner.config.settings
    definition = runner.pipeline.filter.definition
    return {
        "maxretry": lambda: settings.maxretry, "findtime": lambda: settings.findtime,
        "bantime": lambda: settings.bantime, "maxmatches": lambda: settings.matches_kept,
        "backend": lambda: runner.source_kind,
        "logpath": lambda: [lp.path for lp in settings.logpath],
        "journalmatch": lambda: list(config.source.journalmatch),
        "ignoreip": lambda: [str(n) for n in settings.ignoreip.networks]
        + list(settings.ignoreip.names),
        "failregex": lambda: list(definition.failregex),
        "ignoreregex": lambda: list(definition.ignoreregex),
        "datepattern": lambda: definition.datepattern,
        "maxlines": lambda: runner.pipeline.filter.maxlines,
        "actions": lambda: [n for n in (config.backend, *(a.name for a in config.actions)) if n],
        "banned": lambda: runner.status()["banned"],
    }


def _new_settings(settings: JailSettings, param: str, value: str) -> JailSettings:
    """The jail's settings with one number changed (``set JAIL maxretry|findtime|bantime``)."""
    try:
        if param == "maxretry":
            return replace(settings, maxretry=parse_int(value, "maxretry", minimum=1))
        if param == "findtime":
            return replace(settings, findtime=parse_positive_duration(value, "findtime"))
        if param == "bantime":
            return replace(settings, bantime=parse_bantime(value))
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    raise CommandError(f"cannot set {param!r} at run time (maxretry, findtime, bantime, "
                       "addignoreip, delignoreip can be set; edit the config and reload for "
                       "others)")


LOG_LEVELS = {"CRITICAL": 50, "ERROR": 40, "WARNING": 30, "NOTICE": NOTICE, "INFO": 20,
              "DEBUG": 10}
"""The level names fail2ban.conf documents for ``loglevel``; a number is taken as well."""


def _log_level(text: str) -> tuple[str, int]:
    """A level's name and number; a number of a named level is shown by its name."""
    word = text.strip().upper()
    if word.isdecimal() and len(word) <= 3:
        level = int(word)
        names = {v: k for k, v in LOG_LEVELS.items()}
        return names.get(level, str(level)), level
    if word in LOG_LEVELS:
        return word, LOG_LEVELS[word]
    raise CommandError(f"invalid log level {text!r} (CRITICAL, ERROR, WARNING, NOTICE, INFO, "
                       "DEBUG or a number)")


def _union(old: tuple[T, ...], new: tuple[T, ...]) -> tuple[T, ...]:
    return old + tuple(x for x in new if x not in old)


def _whole(value: Any) -> Any:
    """600.0 -> 600, in lists too: fail2ban prints whole seconds as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value
