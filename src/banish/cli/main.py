"""The ``banish`` command: parses arguments, dispatches to a verb, turns errors into exit codes.

Every user error (bad option, broken filter, unreadable file) becomes one line on stderr naming
the place and the reason, and exit status 2 — never a traceback.

SIGPIPE: a verb that prints (regex, scan, dump, check, status, banned ...) keeps the default
disposition, so ``banish regex ... | head`` ends quietly when head does. ``run`` ignores it: the
daemon writes to control clients that may hang up before reading their answer, and to a log
stream that may close; either must cost one failed write, never the daemon (exit by signal 13,
no log line, a stale socket).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import USAGE_EXIT, BanishError
from . import check, commands, dump, fleet_schema, import_fail2ban, regex, report, run, scan, web


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_EXIT, f"banish: {message} (see banish --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="banish", description="Intrusion prevention that reads fail2ban's "
                     "configuration unchanged.")
    parser.add_argument("--version", action="version", version=f"banish {__version__}")
    parser.add_argument("--socket", metavar="PATH",
                        help="control socket of the daemon (default: $BANISH_SOCKET, else "
                             "/run/banish/banish.sock)")
    # fail2ban-client's global spellings; main() turns them into the verbs before parsing.
    parser.add_argument("-t", "--test", action="store_true",
                        help="same as `banish check` (fail2ban-client -t): banish -t [-c DIR]")
    parser.add_argument("-d", "--dump", action="store_true",
                        help="same as `banish dump` (fail2ban-client -d): banish -d [-c DIR] "
                             "[--json]")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    p = verbs.add_parser("regex", help="test a filter against a log file or line",
                         description="Test a filter against a log file or a single line.")
    regex.add_arguments(p)
    p.set_defaults(run=regex.run)
    p = verbs.add_parser("run", help="run the daemon in the foreground",
                         description="Run the daemon in the foreground (systemd Type=notify).")
    run.add_arguments(p)
    p.set_defaults(run=run.run)
    p = verbs.add_parser("scan", help="what-if: which addresses would the jails ban in these logs",
                         description="Offline what-if over existing logs: no daemon, no root.")
    scan.add_arguments(p)
    p.set_defaults(run=scan.run)
    p = verbs.add_parser("import-fail2ban", help="carry fail2ban's active bans into banish",
                         description="Copy the bans still in force in fail2ban's database into "
                         "banish's store (stop banish first; it re-applies them at start).")
    import_fail2ban.add_arguments(p)
    p.set_defaults(run=import_fail2ban.run)
    p = verbs.add_parser("check", help="test the configuration: would every jail run "
                         "(fail2ban-client -t)", description="Load the configuration and "
                         "compile every enabled jail as the daemon would; print each problem "
                         "(file, section, option, reason). Exit 2 if a jail would be skipped.")
    check.add_arguments(p)
    p.set_defaults(run=check.run)
    p = verbs.add_parser("dump", help="print every enabled jail's resolved settings "
                         "(fail2ban-client -d)", description="Every enabled jail's settings, "
                         "filter regexes and action commands after all substitution.")
    dump.add_arguments(p)
    p.set_defaults(run=dump.run)
    p = verbs.add_parser("fleet-schema", help="print the fleet's PostgreSQL schema (for psql)",
                         description="The SQL that creates the fleet's tables, for the "
                         "database owner to run once: banish fleet-schema --grant ROLE | psql")
    fleet_schema.add_arguments(p)
    p.set_defaults(run=fleet_schema.run)
    p = verbs.add_parser("report", help="who was banned, from where, when (table, json, csv, "
                         "html)", description="Totals, bans and failures by jail, node, "
                         "country, AS, hour and day, top and repeat offenders, user names "
                         "tried, from the ban history (no daemon needed).")
    report.add_arguments(p)
    p.set_defaults(run=report.run)
    p = verbs.add_parser("web", help="local dashboard: live bans, charts, search, unban",
                         description="Serve the dashboard on 127.0.0.1 (or a Unix socket) "
                         "behind a token; /metrics serves the daemon's Prometheus metrics.")
    web.add_arguments(p)
    p.set_defaults(run=web.run)
    commands.add_control_verbs(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A reader closing the pipe early (`banish regex ... | head`, `banish --help | head`) is
    # not an error; set before parsing, which may print help.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(
        check.fail2ban_spelling(sys.argv[1:] if argv is None else argv))
    if args.run is run.run:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        return int(args.run(args))
    except BanishError as exc:
        print(f"banish: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", USAGE_EXIT))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
