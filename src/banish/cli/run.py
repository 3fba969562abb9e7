"""``banish run``: start the daemon in the foreground (systemd ``Type=notify``).

Owns the command line of the daemon and how it was started: on a terminal (stderr is a tty)
the log lines also appear there, while ``logtarget`` keeps receiving them; under systemd
stderr is the journal, not a tty, so nothing is logged twice. Must not run the daemon's
lifecycle (``daemon/runtime.py`` does).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..paths import default_config_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="DIR",
                   help="config directory (default: /etc/banish if it exists, else the packaged "
                        "defaults; /etc/fail2ban runs an unchanged fail2ban tree)")
    p.add_argument("--db", metavar="PATH", help="SQLite store (overrides dbfile)")
    p.add_argument("--logtarget", metavar="FILE",
                   help="log file, or STDOUT, STDERR, SYSLOG (overrides logtarget); on a "
                        "terminal the lines are shown there too")
    p.add_argument("--pidfile", metavar="PATH", help="pid file (overrides pidfile)")
    p.add_argument("--i-know", action="store_true",
                   help="start even if a friends-only service would cut off the SSH session "
                        "this runs in")
    # SUPPRESS: the same option as ``banish --socket PATH run`` (main's global one), which an
    # absent ``run --socket`` must not overwrite with None; given twice, the later one wins.
    p.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                   help="control socket (overrides socket and $BANISH_SOCKET)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from ..daemon.logsetup import echo_to_terminal
    from ..daemon.runtime import Runtime

    socket = getattr(args, "socket", None)  # absent when run() is called without main's parser
    overrides = {"socket": socket or os.environ.get("BANISH_SOCKET", ""),
                 "dbfile": args.db or "", "logtarget": args.logtarget or "",
                 "pidfile": args.pidfile or ""}
    runtime = Runtime(args.config or default_config_dir(), overrides=overrides,
                      i_know=bool(getattr(args, "i_know", False)))
    echo_to_terminal(sys.stderr)
    return asyncio.run(runtime.run())
