"""The ``[fleet]`` section of banish.conf: which PostgreSQL database the servers share bans in.

    [fleet]
    database = host=db.example.org dbname=banish user=banish sslmode=verify-full
    node = web1                # default: this host's name
    passfile = /etc/banish/pgpass

Owns reading it into ``FleetSettings``: the libpq connection string or URI (``database``),
this node's name, and the password file libpq should read (``passfile``; else PGPASSFILE or
~/.pgpass, as libpq does). A password written into ``database`` itself is accepted with a
warning when the file is readable by others, and is never logged: ``describe`` gives the
connection without it. Per-jail options (``fleet = share|receive|both|off``,
``fleetmaxretry``) are ``config.values``'. Must not connect to anything.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from dataclasses import dataclass

from ..errors import ConfigError
from .ini import IniTree

SECTION = "fleet"
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)|(://[^:/@]*:)([^@/]*)(@)")


@dataclass(frozen=True, slots=True)
class FleetSettings:
    database: str
    node: str
    passfile: str | None = None

    @property
    def described(self) -> str:
        return describe(self.database)


def describe(conninfo: str) -> str:
    """The connection string with any password replaced by ``***``: fit for a log."""
    return _PASSWORD.sub(lambda m: (m.group(1) + "***") if m.group(1) else
                         (m.group(3) + "***" + m.group(5)), conninfo)


def fleet_settings(tree: IniTree, file: str, warnings: list[ConfigError] | None
                   ) -> FleetSettings | None:
    """The fleet of banish.conf's ``[fleet]`` section, or None without one (no fleet)."""
    if not tree.has_section(SECTION):
        return None

    def get(option: str) -> str:
        return (tree.get(SECTION, option) or "").strip()

    database = get("database")
    if not database:
        raise ConfigError("give the PostgreSQL connection (a libpq string or URI)",
                          file=file, section=SECTION, option="database")
    node = get("node") or socket.gethostname().split(".")[0]
    if not NODE_NAME.fullmatch(node):
        raise ConfigError(f"invalid node name {node!r} (letters, digits, '_', '.', '-')",
                          file=file, section=SECTION, option="node")
    passfile = get("passfile") or None
    if passfile is not None and not os.path.isfile(passfile):
        raise ConfigError(f"no such file: {passfile}", file=file, section=SECTION,
                          option="passfile")
    if describe(database) != database and warnings is not None and _others_read(file):
        warnings.append(ConfigError(
            "the database password is written in a file others can read: use passfile "
            "(mode 0600) or PGPASSFILE instead", file=file, section=SECTION, option="database"))
    if passfile is not None and warnings is not None and _others_read(passfile):
        warnings.append(ConfigError("the password file is readable by others (libpq ignores "
                                    "it then): chmod 0600", file=file, section=SECTION,
                                    option="passfile"))
    unknown = set(tree.own_options(SECTION)) - {"database", "node", "passfile"}
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(f"unknown option {name!r} (database, node, passfile)", file=file,
                          section=SECTION, option=name)
    return FleetSettings(database, node, passfile)


def _others_read(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False
