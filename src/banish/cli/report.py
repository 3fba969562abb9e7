"""``banish report``: what the ban history says about who attacks, from where and how.

Owns the command line (period, jails, nodes, format, output file) and opening the store the
daemon writes (``dbfile`` of banish.conf, or ``--db``); the numbers come from
``insight/report.py``, the looks from ``insight/render.py`` and ``insight/html.py``. It reads
while the daemon runs (WAL), and fills in origins old history lacks (written back when the
file is writable, so the next report is faster). No daemon, no network needed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from datetime import datetime

from ..errors import ConfigError

FORMATS = ("table", "json", "csv", "html")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="DIR",
                   help="config directory whose banish.conf names the store (default: "
                        "/etc/banish if it exists, else the packaged defaults)")
    p.add_argument("--db", metavar="PATH", help="the store to read (overrides dbfile)")
    p.add_argument("--since", metavar="WHEN", default="30d",
                   help="start: a duration back from now (30d, 12h, 1w) or a date/time "
                        "(2025-11-01, '2025-11-01 08:00', epoch seconds); default 30d")
    p.add_argument("--until", metavar="WHEN",
                   help="end (same forms as --since); default now")
    p.add_argument("--jail", action="append", default=[], metavar="JAIL",
                   help="only this jail (repeat for several)")
    p.add_argument("--node", action="append", default=[], metavar="NODE",
                   help="only bans decided by this fleet node (repeat for several); this "
                        "host's own bans are node 'local' unless [fleet] names it")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (terminal), json, csv, or html (one self-contained file)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--utc", action="store_true", help="hours and days in UTC, not local time")
    p.add_argument("--no-enrich", action="store_true",
                   help="do not look up origins the history lacks")
    p.add_argument("--now", metavar="EPOCH", type=float, help=argparse.SUPPRESS)


def parse_when(value: str, now: float, option: str) -> float:
    """A duration back from ``now``, epoch seconds, or an ISO date/time in local time."""
    from ..config.values import parse_duration

    text = value.strip()
    try:
        return float(text) if float(text) > 1e8 else now - float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        pass
    try:
        return now - parse_duration(text, option)
    except ConfigError:
        raise ConfigError(f"{option}: expected a duration (30d), a date (2025-11-01) or epoch "
                          f"seconds, not {value!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..config.loader import load_daemon_settings
    from ..insight import html, render
    from ..insight.geo import Geo
    from ..insight.report import build
    from ..paths import default_config_dir
    from ..store import insight as db
    from ..store.sqlite import SqliteStore

    now = args.now if args.now is not None else time.time()
    since = parse_when(args.since, now, "--since")
    until = parse_when(args.until, now, "--until") if args.until else now + 1
    if until <= since:
        raise ConfigError("--until must be after --since")
    settings = None
    if not args.db or not args.no_enrich:
        config_dir = args.config or default_config_dir()
        if args.config and not os.path.isdir(config_dir):
            raise ConfigError("config directory does not exist", file=config_dir,
                              option="--config")
        settings = load_daemon_settings(config_dir) if os.path.isdir(config_dir) else None
    dbfile = args.db or (settings.dbfile if settings else "")
    if not dbfile or not os.path.exists(dbfile):
        raise ConfigError("no ban database here (is banish running? --db PATH)",
                          file=dbfile or "-", option="--db")
    SqliteStore(dbfile).close()  # checks the file is banish's and brings its schema up to date
    local = settings.fleet.node if settings is not None and settings.fleet is not None \
        else "local"
    spec = settings.geoipdb if settings is not None else "shipped"
    geo = None if args.no_enrich else (lambda: Geo.open(spec))  # opened only if needed
    conn, second = db.connect(dbfile), db.connect(dbfile)
    try:
        report = build(conn, db.Scope(since, until, tuple(args.jail), tuple(args.node), local),
                       geo=geo, utc=args.utc, now=now, enrich=geo is not None, second=second)
    finally:
        conn.close()
        second.close()
    if args.format == "json":
        text = render.as_json(report)
    elif args.format == "csv":
        text = render.as_csv(report)
    elif args.format == "html":
        text = html.page(report, f"banish report — {socket.gethostname()}")
    else:
        text = render.table(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0
