"""Load a whole configuration directory (banish's own, or an unchanged /etc/fail2ban tree).

Owns the compile-once step: ``jail.conf`` + ``jail.d`` + ``.local`` files, each enabled jail's
filter, source, firewall and action.d scripts, and the daemon settings (``banish.conf``, else
fail2ban's ``fail2ban.conf``), turned into one validated, immutable ``Config``. No raw option
is read after this. A jail that cannot be compiled is skipped with its error (file, section,
option, reason) and every other jail loads, as fail2ban does; broken daemon settings or an
unreadable jail.conf raise ConfigError. Reload builds a new ``Config`` and the daemon compares
typed values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..core.subnets import SubnetPolicy
from ..errors import ConfigError
from .actiondef import ActionDefinition
from .filterdef import FILTER_OPTIONS, FilterDefinition, load_filter, split_name_args
from .firewall import compile_enforcement
from .fleet import FleetSettings, fleet_settings
from .friends import FriendsConfig, friends_config, section_name, with_friends
from .ini import IniTree
from .model import JailFirewall, JailSettings, LogPath
from .notify import NotifyAction
from .subnets import subnet_policy
from .values import jail_settings, parse_bool, parse_duration

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
    ignoreresolve: float = 300.0
    """How often ignoreip and friends host names are looked up again."""
    fleet: FleetSettings | None = None
    """The shared PostgreSQL database of a fleet (banish.conf ``[fleet]``), if any."""
    geoipdb: str = "shipped"
    """Where bans' origins come from (insight/geo.py): ``shipped``, .mmdb paths, or ``off``."""
    enrich: str = "auto"
    """When the daemon looks up bans' origins: ``live`` (each ban, beside the ban path),
    ``later`` (``banish report``/``web`` fill what is missing), ``auto``: live for .mmdb
    files (memory-mapped, cheap), later for the shipped data (~110 MB held in memory)."""
    reversedns: bool = False
    """Also record banned addresses' reverse DNS names (asynchronous, cached)."""
    metricsfile: str = ""
    """A node_exporter textfile the daemon keeps up to date with its metrics ("" none)."""


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """Where a jail's lines come from, as configured. Globs are kept as written: which files
    exist, and whether ``backend = auto`` ends up on files or the journal, is decided by the
    daemon when the jail starts (it looks at the disk then, not at load)."""

    backend: str = "auto"
    """fail2ban's name without its options: auto, polling, pyinotify, gamin or systemd."""
    logpaths: tuple[LogPath, ...] = ()
    journalmatch: tuple[str, ...] = ()
    """journalctl-style alternatives, each ``FIELD=value FIELD=value``."""
    journal_path: str | None = None
    """``systemd[journalpath=DIR]``: read that directory instead of the system journal."""
    journal_files: tuple[str, ...] = ()
    """``systemd[journalfiles=A B]``: read these files."""

    @property
    def journal(self) -> bool:
        """Reads the journal whatever the disk holds (``backend = systemd``)."""
        return self.backend == "systemd"


@dataclass(frozen=True, slots=True)
class JailConfig:
    """One enabled jail, compiled: every value typed and checked, nothing left to read.

    Two JailConfigs compare equal exactly when running either would behave the same, so reload
    restarts a jail when and only when ``==`` says it changed (the source ``file`` is only
    where it was written, and does not count).
    """

    settings: JailSettings
    filter: FilterDefinition
    source: SourceConfig = field(default_factory=SourceConfig)
    firewall: JailFirewall | None = None
    backend: str | None = "null"
    """The native firewall backend (``nftables``, ``ipset``, ``iptables``, ``auto``, ``null``)
    or None when only action.d scripts enforce the jail's bans."""
    actions: tuple[ActionDefinition, ...] = ()
    """action.d scripts, resolved; they run beside the firewall, in this order."""
    notify: tuple[NotifyAction, ...] = ()
    """Native notification actions (``banish-mail[...]``...; ``config/notify.py``)."""
    logtimezone: str | None = None
    journal_filter: FilterDefinition | None = None
    """The filter read with ``logtype = journal``, for a jail whose ``backend = auto`` may fall
    back to the journal (set only when that can happen and the filter differs)."""
    subnets: SubnetPolicy = field(default_factory=SubnetPolicy)
    file: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def jail_firewall(self) -> JailFirewall:
        return self.firewall if self.firewall is not None else JailFirewall(self.name)


@dataclass(frozen=True, slots=True)
class SkippedJail:
    """An enabled jail that cannot run, and why: the others run without it (as in fail2ban).
    ``error`` names the file, section, option and reason."""

    name: str
    error: ConfigError


@dataclass(frozen=True, slots=True)
class Config:
    directory: str
    daemon: DaemonSettings
    jails: tuple[JailConfig, ...]
    skipped: tuple[SkippedJail, ...] = ()
    warnings: tuple[ConfigError, ...] = ()
    friends: tuple[FriendsConfig, ...] = ()
    """``[friends-only NAME]`` services; their friends are in every jail's ignoreip too."""
    """Things read but probably not meant (an inline ``# comment`` after a value)."""

    def jail(self, name: str) -> JailConfig | None:
        return next((j for j in self.jails if j.name == name), None)


def load_config(directory: str, *, only: set[str] | None = None,
                include_disabled: bool = False, strict: bool = False) -> Config:
    """Read ``directory``; ``only`` limits which jails are compiled (e.g. ``scan --jail``).

    A jail that cannot be compiled is listed in ``Config.skipped`` and the others load; with
    ``strict`` its error is raised instead. Broken daemon settings always raise.
    """
    if not os.path.isdir(directory):
        raise ConfigError("config directory does not exist", file=directory)
    warnings: list[ConfigError] = []
    daemon = load_daemon_settings(directory, warnings)
    jails, skipped, friends = load_jails(directory, only=only,
                                         include_disabled=include_disabled, warnings=warnings)
    if strict and skipped:
        raise skipped[0].error
    return Config(directory, daemon, jails, skipped, tuple(warnings), friends)


def load_daemon_settings(directory: str,
                         warnings: list[ConfigError] | None = None) -> DaemonSettings:
    for name, section in (("banish", "Definition"), ("fail2ban", "Definition")):
        if not any(os.path.isfile(os.path.join(directory, name + ext)) for ext in (".conf", ".local")):
            continue
        tree = IniTree.read_named(directory, name, hash_comments=True)
        if warnings is not None:
            warnings.extend(tree.warnings)
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
            resolve = parse_duration(get("ignoreresolve", "5m"), "ignoreresolve")
        except ConfigError as exc:
            raise exc.located(file=file, section=section) from exc
        if resolve <= 0:
            raise ConfigError("must be a positive duration", file=file, section=section,
                              option="ignoreresolve")
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
            ignoreresolve=resolve,
            fleet=fleet_settings(tree, file, warnings),
            geoipdb=get("geoipdb", "shipped"),
            enrich=_enrich_mode(get("enrich", "auto"), file, section),
            reversedns=_located_bool(get("reversedns", "false"), "reversedns", file,
                                     section),
            metricsfile=get("metricsfile", ""),
        )
    return DaemonSettings()


def _enrich_mode(value: str, file: str, section: str) -> str:
    mode = value.strip().lower()
    if mode not in ("auto", "live", "later"):
        raise ConfigError(f"unknown enrich mode {value.strip()!r} (auto, live or later)",
                          file=file, section=section, option="enrich")
    return mode


def _located_bool(value: str, option: str, file: str, section: str) -> bool:
    try:
        return parse_bool(value, option)
    except ConfigError as exc:
        raise exc.located(file=file, section=section) from exc


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
               include_disabled: bool = False, warnings: list[ConfigError] | None = None
               ) -> tuple[tuple[JailConfig, ...], tuple[SkippedJail, ...],
                          tuple[FriendsConfig, ...]]:
    """The jails (compiled or skipped) and the friends-only services of ``directory``; a
    broken friends-only section raises (skipping it would open its ports to everyone)."""
    if not any(os.path.isfile(os.path.join(directory, "jail" + ext)) for ext in (".conf", ".local")):
        return (), (), ()
    tree = IniTree.read_named(directory, "jail", hash_comments=True)
    if warnings is not None:
        warnings.extend(tree.warnings)
    # fail2ban offers these to every jail's interpolation.
    tree.defaults.setdefault("fail2ban_confpath", directory)
    tree.defaults.setdefault("fail2ban_version", "1.0.2")
    jails: list[JailConfig] = []
    skipped: list[SkippedJail] = []
    friends: list[FriendsConfig] = []
    for section in tree.sections:
        if section in _NOT_JAILS or section.startswith("KNOWN/"):
            continue
        if section_name(section) is not None:
            own = {o: tree.get(section, o) or "" for o in tree.own_options(section)
                   if not o.startswith("known/")}
            friends.append(friends_config(section, own, _jail_file(tree, section)))
            continue
        if only is not None and section not in only:
            continue
        file = _jail_file(tree, section)
        try:
            jail = _load_jail(directory, tree, section, include_disabled, file)
        except ConfigError as exc:
            skipped.append(SkippedJail(section, exc.located(file=file, section=section)))
            continue
        if jail is not None:
            jails.append(jail)
    if only is not None:
        missing = only - {j.name for j in jails} - {s.name for s in skipped}
        if missing:
            raise ConfigError(f"no such jail: {', '.join(sorted(missing))}",
                              file=os.path.join(directory, "jail.conf"))
    if friends:
        everyone = tuple(friends)
        jails = [_befriended(j, everyone) for j in jails]
    return tuple(jails), tuple(skipped), tuple(friends)


def _befriended(jail: JailConfig, friends: tuple[FriendsConfig, ...]) -> JailConfig:
    """A friend is never banned: in the jail's ignore list and in its kernel allow set."""
    ignoreip = with_friends(jail.settings.ignoreip, friends)
    firewall = replace(jail.jail_firewall, allow=ignoreip.networks)
    return replace(jail, settings=replace(jail.settings, ignoreip=ignoreip), firewall=firewall)


def _load_jail(directory: str, tree: IniTree, section: str, include_disabled: bool,
               file: str) -> JailConfig | None:
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
    backend, backend_args = split_name_args(settings.backend)
    backend = backend.strip().lower()
    if "logtype" not in extra and backend == "systemd":
        extra["logtype"] = "journal"
    # Filter options written in the jail section itself win over the filter file's.
    for opt in FILTER_OPTIONS:
        if opt in own and opt in options:
            extra[opt] = options[opt]
    definition = _filter(directory, name, extra)
    journal_filter = None
    journal_capable = backend == "systemd" or (backend == "auto" and bool(definition.journalmatch))
    if backend == "auto" and definition.journalmatch and definition.logtype != "journal":
        journal_filter = _filter(directory, name, {**extra, "logtype": "journal"})
        if journal_filter == definition:
            journal_filter = None
    if not settings.logpath and not journal_capable:
        raise ConfigError("no logpath given (and the backend is not systemd)", option="logpath")
    source = SourceConfig(
        backend=backend, logpaths=settings.logpath,
        journalmatch=tuple(" ".join(m) for m in definition.journalmatch),
        journal_path=backend_args.get("journalpath") or None,
        journal_files=tuple(backend_args.get("journalfiles", "").split()))
    enforcement = compile_enforcement(directory, section, options, file)
    # ignoreip's networks are allowed in the kernel ahead of the jail's bans.
    firewall = replace(enforcement.firewall, allow=settings.ignoreip.networks)
    return JailConfig(
        settings=settings, filter=definition, source=source, firewall=firewall,
        backend=enforcement.backend, actions=enforcement.scripts, notify=enforcement.notify,
        logtimezone=(options.get("logtimezone") or "").strip() or None,
        journal_filter=journal_filter, subnets=subnet_policy(options), file=file)


def _filter(directory: str, name: str, extra: dict[str, str]) -> FilterDefinition:
    try:
        return load_filter(directory, name, extra)
    except ConfigError as exc:
        if exc.reason.startswith("unknown filter"):
            raise ConfigError(exc.reason, option="filter") from exc
        raise


# Options every jail needs to read even when they come from [DEFAULT].
_NEEDED = frozenset({"enabled", "filter", "logpath", "backend", "maxretry", "findtime", "bantime",
                     "ignoreip", "action", "banaction", "port", "protocol"})
