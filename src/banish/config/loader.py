"""Load a whole configuration directory (banish's own, or an unchanged /etc/fail2ban tree).

Owns the compile-once step: ``jail.conf`` + ``jail.d`` + ``.local`` files, each enabled jail's
filter, and the daemon settings (``banish.conf``, else fail2ban's ``fail2ban.conf``), turned into
one validated, immutable ``Config``. Reload builds a new ``Config`` and the daemon compares; a
broken file raises ConfigError naming file, section and option, and nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..core.subnets import SubnetPolicy
from ..errors import ConfigError
from .filterdef import (
    FILTER_OPTIONS,
    FilterDefinition,
    load_filter,
    split_name_args,
    split_specs,
)
from .ini import IniTree
from .model import JailSettings
from .subnets import subnet_policy
from .values import jail_settings, parse_duration

_NOT_JAILS = {"INCLUDES", "DEFAULT"}

DEFAULT_SOCKET = "/run/banish/banish.sock"
DEFAULT_PIDFILE = "/run/banish/banish.pid"
DEFAULT_DBFILE = "/var/lib/banish/banish.sqlite3"
DEFAULT_LOGTARGET = "/var/log/banish.log"


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """Where the daemon listens, keeps its store and writes its log."""

    socket: str = DEFAULT_SOCKET
    pidfile: str = DEFAULT_PIDFILE
    dbfile: str = DEFAULT_DBFILE
    dbpurgeage: float = 86400.0
    logtarget: str = DEFAULT_LOGTARGET
    loglevel: str = "INFO"
    reconcileinterval: float = 300.0
    """How often the firewall is compared with the store's active bans and repaired."""


@dataclass(frozen=True, slots=True)
class JailConfig:
    """One enabled jail: its checked settings, its compiled-ready filter and raw extras."""

    settings: JailSettings
    filter: FilterDefinition
    actions: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict, compare=False)
    file: str = ""
    subnets: SubnetPolicy = field(default_factory=SubnetPolicy)

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass(frozen=True, slots=True)
class Config:
    directory: str
    daemon: DaemonSettings
    jails: tuple[JailConfig, ...]

    def jail(self, name: str) -> JailConfig | None:
        return next((j for j in self.jails if j.name == name), None)


def load_config(directory: str, *, only: set[str] | None = None,
                include_disabled: bool = False) -> Config:
    """Read ``directory``; ``only`` limits which jails are compiled (e.g. ``scan --jail``)."""
    if not os.path.isdir(directory):
        raise ConfigError("config directory does not exist", file=directory)
    return Config(directory, load_daemon_settings(directory),
                  load_jails(directory, only=only, include_disabled=include_disabled))


def load_daemon_settings(directory: str) -> DaemonSettings:
    for name, section in (("banish", "Definition"), ("fail2ban", "Definition")):
        if not any(os.path.isfile(os.path.join(directory, name + ext)) for ext in (".conf", ".local")):
            continue
        tree = IniTree.read_named(directory, name)
        file = tree.files[0] if tree.files else name

        def get(option: str, default: str, tree: IniTree = tree, section: str = section) -> str:
            value = tree.get(section, option) if tree.has_section(section) else None
            return value.strip() if value and value.strip() else default

        dbfile = get("dbfile", DEFAULT_DBFILE)
        if os.path.basename(dbfile) == "fail2ban.sqlite3":
            # fail2ban's own database has another schema: keep ours beside it, never touch it.
            dbfile = os.path.join(os.path.dirname(dbfile), "banish.sqlite3")
        try:
            purge = parse_duration(get("dbpurgeage", "1d"), "dbpurgeage")
            reconcile = parse_duration(get("reconcileinterval", "5m"), "reconcileinterval")
        except ConfigError as exc:
            raise exc.located(file=file, section=section) from exc
        if reconcile <= 0:
            raise ConfigError("must be a positive duration", file=file, section=section,
                              option="reconcileinterval")
        return DaemonSettings(
            socket=get("socket", DEFAULT_SOCKET),
            pidfile=get("pidfile", DEFAULT_PIDFILE),
            dbfile=dbfile,
            dbpurgeage=purge,
            logtarget=get("logtarget", DEFAULT_LOGTARGET),
            loglevel=get("loglevel", "INFO").upper(),
            reconcileinterval=reconcile,
        )
    return DaemonSettings()


def _jail_file(tree: IniTree, section: str) -> str:
    """The last file that mentions ``[section]``: where a user would look to fix it."""
    for path in reversed(tree.files):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                if f"[{section}]" in fh.read():
                    return path
        except OSError:
            continue
    return tree.files[0] if tree.files else "jail.conf"


def load_jails(directory: str, *, only: set[str] | None = None,
               include_disabled: bool = False) -> tuple[JailConfig, ...]:
    if not any(os.path.isfile(os.path.join(directory, "jail" + ext)) for ext in (".conf", ".local")):
        return ()
    tree = IniTree.read_named(directory, "jail")
    # fail2ban offers these to every jail's interpolation.
    tree.defaults.setdefault("fail2ban_confpath", directory)
    tree.defaults.setdefault("fail2ban_version", "1.0.2")
    jails: list[JailConfig] = []
    for section in tree.sections:
        if section in _NOT_JAILS or section.startswith("KNOWN/"):
            continue
        if only is not None and section not in only:
            continue
        file = _jail_file(tree, section)
        try:
            jail = _load_jail(directory, tree, section, include_disabled)
        except ConfigError as exc:
            raise exc.located(file=file, section=section) from exc
        if jail is not None:
            try:
                subnets = subnet_policy(jail[3])
            except ConfigError as exc:
                raise exc.located(file=file, section=section) from exc
            jails.append(JailConfig(jail[0], jail[1], jail[2], jail[3], file, subnets))
    if only is not None:
        missing = only - {j.name for j in jails}
        if missing:
            raise ConfigError(f"no such jail: {', '.join(sorted(missing))}",
                              file=os.path.join(directory, "jail.conf"))
    return tuple(jails)


def _load_jail(directory: str, tree: IniTree, section: str, include_disabled: bool
               ) -> tuple[JailSettings, FilterDefinition, tuple[str, ...], dict[str, str]] | None:
    enabled = tree.get(section, "enabled") or "false"
    if enabled.strip().lower() not in ("true", "yes", "1", "on") and not include_disabled:
        jail_settings(section, {"enabled": enabled})  # still reject a value that is no boolean
        return None
    options: dict[str, str] = {}
    own = set(tree.own_options(section))
    for option in {*tree.defaults, *own}:
        if option.startswith("known/") or "?" in option:
            continue
        try:
            value = tree.get(section, option)
        except ConfigError as exc:
            if option not in own and option not in _NEEDED:
                continue  # an unused [DEFAULT] helper that only other jails can interpolate
            raise exc.located(section=section, option=option) from exc
        if value is not None:
            options[option] = value
    settings = jail_settings(section, options)
    if not settings.enabled and not include_disabled:
        return None
    spec = settings.filter
    name, args = split_name_args(spec) if "[" in spec else (spec, {})
    extra = dict(args)
    if "logtype" not in extra and settings.backend.startswith("systemd"):
        extra["logtype"] = "journal"
    # Filter options written in the jail section itself win over the filter file's.
    for opt in FILTER_OPTIONS:
        if opt in tree.own_options(section) and opt in options:
            extra[opt] = options[opt]
    try:
        definition = load_filter(directory, name, extra)
    except ConfigError as exc:
        if exc.reason.startswith("unknown filter"):
            raise ConfigError(exc.reason, option="filter") from exc
        raise
    journal_capable = settings.backend.startswith("systemd") or (
        settings.backend == "auto" and bool(definition.journalmatch))
    if not settings.logpath and not journal_capable:
        raise ConfigError("no logpath given (and the backend is not systemd)", option="logpath")

    actions = split_specs(options.get("action", ""))
    return settings, definition, actions, options


# Options every jail needs to read even when they come from [DEFAULT].
_NEEDED = frozenset({"enabled", "filter", "logpath", "backend", "maxretry", "findtime", "bantime",
                     "ignoreip", "action", "banaction", "port", "protocol"})
