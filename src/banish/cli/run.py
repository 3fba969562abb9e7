"""``banish run``: start the daemon in the foreground (systemd ``Type=notify``)."""

from __future__ import annotations

import argparse
import os

from ..paths import default_config_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="DIR",
                   help="config directory (default: /etc/banish if it exists, else the packaged "
                        "defaults; /etc/fail2ban runs an unchanged fail2ban tree)")
    p.add_argument("--db", metavar="PATH", help="SQLite store (overrides dbfile)")
    p.add_argument("--logtarget", metavar="FILE",
                   help="log file, or STDOUT, STDERR, SYSLOG (overrides logtarget)")
    p.add_argument("--pidfile", metavar="PATH", help="pid file (overrides pidfile)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from ..daemon.runtime import Runtime

    overrides = {"socket": args.socket or os.environ.get("BANISH_SOCKET", ""),
                 "dbfile": args.db or "", "logtarget": args.logtarget or "",
                 "pidfile": args.pidfile or ""}
    runtime = Runtime(args.config or default_config_dir(), overrides=overrides)
    return asyncio.run(runtime.run())
