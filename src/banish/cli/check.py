"""``banish check``: would this configuration run? (``fail2ban-client -t``)

Owns the test of a config directory exactly as the daemon would take it: load it (jail files,
filters, actions, daemon settings), then build every jail's ``banish.pipeline.Pipeline`` so
that each regex, datepattern and time zone is compiled. Prints one line per problem -- file,
section, option and reason, as the daemon logs it when it skips a jail (except that a filter
option written in the jail section itself is placed there) -- one line per jail that is fine,
and a summary. Exit 2 when a jail would be skipped or the daemon settings are broken, 0
otherwise (warnings alone do not fail the check). Also owns the fail2ban-client spellings
``-t``/``--test`` and ``-d``/``--dump``, which fail2ban puts before any command.
Must not start anything, touch the firewall or contact a running daemon.
"""

from __future__ import annotations

import argparse
import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import USAGE_EXIT, ConfigError
from ..paths import default_config_dir

if TYPE_CHECKING:  # the config reader is imported when checking: `banish status` starts fast
    from ..config.loader import Config, JailConfig

__all__ = ["CheckReport", "add_arguments", "check_config", "fail2ban_spelling", "run"]

_GLOBAL_VERBS = {"-t": "check", "--test": "check", "-d": "dump", "--dump": "dump"}
# Options of the main parser that come before any verb, and whether they take a value.
_MAIN_OPTIONS = {"--socket": True, "--version": False}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="DIR",
                   help="config directory (default: /etc/banish or the packaged defaults)")


@dataclass
class CheckReport:
    """What ``check`` found; ``lines`` in the order they print."""

    directory: str
    ok: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    broken: bool = False
    """The configuration as a whole did not load (daemon settings, unreadable jail.conf)."""

    @property
    def exit_code(self) -> int:
        return USAGE_EXIT if self.broken or self.skipped else 0

    @property
    def summary(self) -> str:
        if self.broken:
            return f"{self.directory}: configuration not loaded"
        return f"{len(self.ok)} jails ok, {len(self.skipped)} skipped"


def check_config(directory: str) -> CheckReport:
    """Load ``directory`` and compile every enabled jail, collecting every problem."""
    from ..config.loader import load_config

    report = CheckReport(directory)
    try:
        config = load_config(directory)
    except ConfigError as exc:
        report.broken = True
        report.lines.append(f"error: {exc}")
        return report
    for warning in config.warnings:
        report.lines.append(f"warning: {warning}")
    for jail in config.jails:
        error = _compile(jail, directory)
        if error is None:
            report.ok.append(jail.name)
            report.lines.append(f"ok: {jail.name}")
            report.lines.extend(f"warning: {w}" for w in _action_warnings(jail))
            report.lines.extend(f"warning: {w}" for w in _logpath_warnings(jail))
        else:
            _skip(report, jail.name, error)
    for skipped in config.skipped:
        _skip(report, skipped.name, skipped.error)
    if not config.jails and not config.skipped:
        report.lines.append(f"warning: {_no_jails(config)}")
    return report


def _compile(jail: JailConfig, directory: str) -> ConfigError | None:
    """Build the jail's pipeline as the daemon does (and its journal form, which a jail whose
    ``backend = auto`` falls back to)."""
    from ..pipeline import Pipeline  # the matcher is imported only when checking

    try:
        Pipeline(jail)
        if jail.journal_filter is not None:
            Pipeline(jail, journal=True)
    except ConfigError as exc:
        return _place(exc, jail, directory)
    return None


def _place(error: ConfigError, jail: JailConfig, directory: str) -> ConfigError:
    """Where to fix a compile error: the matcher names the filter file, but a ``failregex``
    (or other filter option) written in the jail section itself is fixed there."""
    from ..config.filterdef import FILTER_OPTIONS
    from ..config.ini import IniTree

    option = error.where.option
    if option in FILTER_OPTIONS:
        try:
            tree = IniTree.read_named(directory, "jail", hash_comments=True)
            own = option in tree.own_options(jail.name)
        except ConfigError:
            own = False
        if own:
            return ConfigError(error.reason, file=jail.file, section=jail.name, option=option)
    return error.located(file=jail.file, section=jail.name)


def _action_warnings(jail: JailConfig) -> list[ConfigError]:
    """Tags an action file uses that nothing defines: the commands run with them as literal
    text (fail2ban does the same), which is rarely meant."""
    return [ConfigError(f"action {a.name!r} ({a.file}): "
                        f"{', '.join(f'<{t}>' for t in a.unresolved)} not defined; its commands "
                        "run with them as literal text (give them as action arguments)",
                        file=jail.file, section=jail.name, option="action")
            for a in jail.actions if a.unresolved]


def _logpath_warnings(jail: JailConfig) -> list[ConfigError]:
    """Log paths that match no file now: the jail waits for them (fail2ban-client -t calls
    this an error; a file that appears later, after a package install, is common)."""
    source = jail.source
    if source.journal:
        return []
    missing = [lp.path for lp in source.logpaths if not glob.glob(lp.path)]
    if not missing:
        return []
    fallback = (" (backend = auto: the journal is read instead)"
                if len(missing) == len(source.logpaths) and source.journalmatch else
                ": the jail watches for it and reads it once it appears")
    return [ConfigError(f"{path} matches no file{fallback}", file=jail.file, section=jail.name,
                        option="logpath") for path in missing]


def _skip(report: CheckReport, name: str, error: ConfigError) -> None:
    report.skipped.append(name)
    report.lines.append(f"error: jail {name!r} skipped: {error}")


def _no_jails(config: Config) -> str:
    return f"{config.directory}: no jail is enabled (enabled = true in jail.local or jail.d/)"


def run(args: argparse.Namespace) -> int:
    report = check_config(args.config or default_config_dir())
    for line in report.lines:
        print(line)
    print(report.summary)
    return report.exit_code


def fail2ban_spelling(argv: Sequence[str]) -> list[str]:
    """``banish -t ...`` / ``banish -d ...`` (fail2ban-client's global flags) as verbs.

    fail2ban-client writes ``-t`` and ``-d`` among its global options, before or after
    ``-c DIR``; banish's verbs take their own options. So the flag becomes the verb and every
    option written around it (``-c DIR``, ``--config DIR``, ``--json``) follows the verb:
    ``banish -c DIR -t`` is ``banish check -c DIR``, ``banish -d --json`` is ``banish dump
    --json``. Options of the main parser (``--socket PATH``) stay before the verb. Anything
    after the first word that is not an option (a verb) is left as it was written.
    """
    args = list(argv)
    main: list[str] = []
    rest: list[str] = []
    verb: str | None = None
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("-") or word == "--":
            break
        name = word.split("=", 1)[0]
        if word in _GLOBAL_VERBS and verb is None:
            verb = _GLOBAL_VERBS[word]
        elif name in _MAIN_OPTIONS:
            takes_value = _MAIN_OPTIONS[name] and "=" not in word
            main.extend(args[i:i + 1 + takes_value])
            i += takes_value
        else:
            rest.append(word)
            if word in ("-c", "--config") and i + 1 < len(args):
                rest.append(args[i + 1])
                i += 1
        i += 1
    if verb is None:
        return args
    return [*main, verb, *rest, *args[i:]]
