"""``banish import-fail2ban``: carry fail2ban's still-active bans into banish's store.

Owns reading fail2ban's SQLite database (the ``bips`` table of fail2ban 0.11 and later: one row
per address and jail, its latest ban), choosing the bans still in force at ``now``, and
recording them in banish's store with their original start and length and ``origin``
"fail2ban". The daemon re-applies active bans from the store when it starts, so each imported
ban gets exactly the time it has left, as fail2ban itself would have restored it.

Must not write fail2ban's database: it is opened read-only (an SQLite ``mode=ro`` URI), so the
admin can still go back to fail2ban. Must not touch the firewall, and must not import into the
store of a running daemon: the daemon holds its active bans in memory and applies stored ones
only at start, so an import it cannot see would look done and enforce nothing. The admin stops
banish, imports, and starts it (README, "Switching from fail2ban").
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..store.base import Ban, BanKey

DEFAULT_DB = "/var/lib/fail2ban/fail2ban.sqlite3"
ORIGIN = "fail2ban"
"""``Ban.origin`` of an imported ban: history shows where it came from."""


@dataclass(frozen=True, slots=True)
class Fail2banBan:
    """One row of fail2ban's ``bips``: the latest ban of ``ip`` in ``jail``.

    ``bantime`` is fail2ban's: seconds, -1 for a permanent ban, and -2 for "unknown" (rows a
    pre-0.11 database was upgraded with, which fail2ban fills in from its jail config).
    """

    ip: str
    jail: str
    timeofban: int
    bantime: int
    failures: int = 0
    matches: tuple[str, ...] = ()


@dataclass
class Plan:
    """What an import does: ``bans`` to record, and why each other row is left out."""

    bans: list[Ban] = field(default_factory=list)
    expired: int = 0
    present: int = 0
    unknown_bantime: int = 0
    not_addresses: list[str] = field(default_factory=list)

    def by_jail(self) -> Counter[str]:
        return Counter(b.jail for b in self.bans)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", default=DEFAULT_DB,
                   help=f"fail2ban's database, read only (default: {DEFAULT_DB})")
    p.add_argument("--config", metavar="DIR",
                   help="banish's config directory: where banish.conf names the store "
                        "(default: /etc/banish if it exists, else the packaged defaults)")
    p.add_argument("--dbfile", metavar="PATH", help="banish's store (overrides dbfile)")
    p.add_argument("--dry-run", action="store_true",
                   help="report what would be imported; write nothing")
    p.add_argument("--now", metavar="EPOCH", type=float,
                   help="the current time, which decides what is still active")


def read_fail2ban_bans(path: str) -> list[Fail2banBan]:
    """Every row of fail2ban's ``bips`` table; ConfigError naming ``path`` if it is not
    a readable fail2ban database."""
    if not os.path.isfile(path):
        why = "no such file" if not os.path.exists(path) else "not a file"
        raise ConfigError(f"cannot read fail2ban's database: {why} (fail2ban.conf's dbfile "
                          "says where it is)", file=path)
    try:
        # mode=ro: SQLite never writes this file, not even to roll back a journal.
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True,
                               timeout=5)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open fail2ban's database: {exc}", file=path) from exc
    try:
        return _read_rows(conn, path)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise ConfigError("fail2ban's database is locked: stop fail2ban first",
                              file=path) from exc
        raise ConfigError(f"not a fail2ban database ({exc})", file=path) from exc
    except sqlite3.Error as exc:
        raise ConfigError(f"not a fail2ban database ({exc})", file=path) from exc
    finally:
        conn.close()


def _read_rows(conn: sqlite3.Connection, path: str) -> list[Fail2banBan]:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "fail2banDb" not in tables:
        raise ConfigError("not a fail2ban database (no fail2banDb table)", file=path)
    version = conn.execute("SELECT version FROM fail2banDb LIMIT 1").fetchone()
    if "bips" not in tables:
        raise ConfigError(f"fail2ban database version {version[0] if version else '?'} has no "
                          "bips table (written before fail2ban 0.11): start fail2ban 0.11 or "
                          "later once to upgrade it", file=path)
    rows = conn.execute("SELECT ip, jail, timeofban, bantime, data FROM bips")
    return [Fail2banBan(str(ip), str(jail), int(at), int(bantime), *_details(data))
            for ip, jail, at, bantime, data in rows]


def _details(data: object) -> tuple[int, tuple[str, ...]]:
    """Failures and matched lines from a row's ``data`` JSON; nothing when it is unusable
    (they only inform history, so a damaged blob must not stop the import)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if not isinstance(data, str):
        return 0, ()
    try:
        parsed = json.loads(data)
    except ValueError:
        return 0, ()
    if not isinstance(parsed, dict):
        return 0, ()
    failures = parsed.get("failures")
    matches = parsed.get("matches")
    lines = tuple(m for m in matches if isinstance(m, str)) if isinstance(matches, list) else ()
    return (failures if isinstance(failures, int) else 0), lines


def plan_import(rows: Iterable[Fail2banBan], now: float,
                existing: Mapping[BanKey, float | None]) -> Plan:
    """The bans in force at ``now`` (fail2ban's own rule: ``timeofban + bantime > now``, or
    permanent), as banish ``Ban``s with canonical addresses.

    ``existing`` maps the keys already active in banish's store to their end (None:
    permanent); a row the store already covers as long is "present", so a second import
    changes nothing. Two spellings of one address in a jail (``::ffff:192.0.2.1``) become one
    ban, the one that ends later.
    """
    from ..addr import canonical_address
    from ..store.base import Ban, BanKey

    plan = Plan()
    chosen: dict[BanKey, Ban] = {}
    for row in rows:
        if row.bantime < -1:
            plan.unknown_bantime += 1
            continue
        if row.bantime >= 0 and row.timeofban + row.bantime <= now:
            plan.expired += 1
            continue
        address = canonical_address(row.ip)
        if address is None:  # an <F-ID> that is no address (a user name ...)
            plan.not_addresses.append(row.ip)
            continue
        ban = Ban(address=address, jail=row.jail, banned_at=float(row.timeofban),
                  bantime=row.bantime, failures=row.failures, matches=row.matches,
                  origin=ORIGIN)
        key = BanKey(address, row.jail)
        if key in existing and _covers(existing[key], ban.expires_at):
            plan.present += 1
            continue
        if key in chosen and _covers(chosen[key].expires_at, ban.expires_at):
            continue
        chosen[key] = ban
    plan.bans = sorted(chosen.values(), key=lambda b: (b.jail, b.banned_at, b.address))
    return plan


def _covers(end: float | None, other_end: float | None) -> bool:
    """A ban ending at ``end`` lasts at least as long as one ending at ``other_end``."""
    return end is None or (other_end is not None and end >= other_end)


def run(args: argparse.Namespace) -> int:
    from ..config.loader import load_config
    from ..paths import default_config_dir

    config_dir = args.config or default_config_dir()
    if not os.path.isdir(config_dir):
        raise ConfigError("config directory does not exist", file=config_dir, option="--config")
    config = load_config(config_dir)  # the daemon's own reading: its store, its jails
    settings = config.daemon
    dbfile = args.dbfile or settings.dbfile
    if os.path.exists(dbfile) and os.path.exists(args.db) and os.path.samefile(dbfile, args.db):
        raise ConfigError("banish's store and fail2ban's database are the same file",
                          file=dbfile, option="--dbfile")
    rows = read_fail2ban_bans(args.db)
    socket = args.socket or os.environ.get("BANISH_SOCKET") or settings.socket
    if _daemon_answers(socket) and not args.dry_run:
        raise ConfigError(f"banish is running (it answers on {socket}): stop it first "
                          "(systemctl stop banish), import, then start it; a running daemon "
                          "applies stored bans only when it starts")
    now = args.now if args.now is not None else time.time()
    plan = plan_import(rows, now, _existing(dbfile, now))
    if plan.bans and not args.dry_run:
        _record(dbfile, plan.bans)
    print(summary(plan, dry_run=args.dry_run))
    for line in warnings(plan, {j.name for j in config.jails}, config_dir):
        print(f"banish: warning: {line}", file=sys.stderr)
    return 0


def _daemon_answers(path: str) -> bool:
    from ..protocol import DaemonUnavailable, Request
    from .client import Client

    try:
        with Client(path, timeout=5) as client:
            client.call(Request("ping"))
    except DaemonUnavailable:
        return False
    return True


def _existing(dbfile: str, now: float) -> dict[BanKey, float | None]:
    """Active bans already in banish's store; none when there is no store yet (a dry run
    must not create one)."""
    from ..store.sqlite import SqliteStore

    if not os.path.exists(dbfile):
        return {}
    store = SqliteStore(dbfile)
    try:
        return {b.key: b.expires_at for b in store.active_bans(now)}
    finally:
        store.close()


def _record(dbfile: str, bans: list[Ban]) -> None:
    from ..store.sqlite import SqliteStore

    os.makedirs(os.path.dirname(os.path.abspath(dbfile)), exist_ok=True)
    store = SqliteStore(dbfile)
    try:
        store.add_bans(bans)  # one transaction: all of them or none
    finally:
        store.close()


def summary(plan: Plan, *, dry_run: bool = False) -> str:
    """One line: ``N active bans imported (jail: n, ...), M expired skipped, K already
    present`` (``would be imported`` for a dry run), then the rarer skips if any."""
    jails = ", ".join(f"{jail}: {n}" for jail, n in sorted(plan.by_jail().items()))
    verb = "would be imported" if dry_run else "imported"
    text = (f"{len(plan.bans)} active bans {verb}{f' ({jails})' if jails else ''}, "
            f"{plan.expired} expired skipped, {plan.present} already present")
    if plan.unknown_bantime:
        text += f", {plan.unknown_bantime} of unknown length skipped"
    if plan.not_addresses:
        text += f", {len(plan.not_addresses)} not addresses skipped"
    return text


def warnings(plan: Plan, jails: set[str], config_dir: str) -> list[str]:
    """What the admin must know before starting banish."""
    out: list[str] = []
    foreign = Counter(b.jail for b in plan.bans if b.jail not in jails)
    if foreign:
        listed = ", ".join(f"{jail} ({n})" for jail, n in sorted(foreign.items()))
        out.append(f"bans of jails that {config_dir} does not run: {listed}; they are stored "
                   "and enforced once such a jail runs")
    if plan.unknown_bantime:
        out.append(f"{plan.unknown_bantime} ban(s) have no recorded length (a database "
                   "upgraded from fail2ban before 0.11) and were not imported")
    if plan.not_addresses:
        shown = ", ".join(repr(a) for a in plan.not_addresses[:3])
        out.append(f"{len(plan.not_addresses)} ban(s) are of IDs that are not IP addresses "
                   f"({shown}) and were not imported")
    return out
