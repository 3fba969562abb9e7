"""The control verbs (status, ban, unban, banned, reload, stop, ping, get, set) on the
``banish`` command line.

Owns only the glue from ``banish.protocol``'s command table to argparse: every verb, argument,
help text and fail2ban spelling comes from that table, so the CLI cannot drift from what the
daemon accepts. Must not define commands or talk to the socket itself (``cli/client.py`` does).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from ..protocol import COMMANDS, Command, socket_path
from . import client

__all__ = ["add_control_verbs"]

Runner = Callable[[argparse.Namespace], int]


class _Formatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own, so the JSON result shapes in
    the epilog keep their line breaks while prose still fills the terminal."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(textwrap.fill(line, width, initial_indent=indent,
                                       subsequent_indent=indent)
                         for line in text.splitlines())


def add_control_verbs(subparsers: Any) -> None:
    """Register every control verb on ``subparsers`` (the action from
    ``ArgumentParser.add_subparsers``); each sets ``run`` to a callable returning the exit
    status and raising BanishError subclasses for main() to print."""
    for cmd in COMMANDS:
        p = subparsers.add_parser(cmd.name, help=cmd.summary, description=cmd.description,
                                  epilog=f"--json prints:\n{cmd.result}",
                                  formatter_class=_Formatter)
        for arg in cmd.cli:
            kwargs: dict[str, Any] = {"help": arg.help}
            if arg.nargs is not None:
                kwargs["nargs"] = arg.nargs
            if arg.metavar is not None:
                kwargs["metavar"] = arg.metavar
            if arg.action is not None:
                kwargs["action"] = arg.action
            p.add_argument(*arg.flags, **kwargs)
        p.add_argument("--json", action="store_true",
                       help="print the daemon's answer as JSON (shape below)")
        # SUPPRESS: a --socket given before the verb (main's global option) is not
        # overwritten with None when the verb's own --socket is absent.
        p.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                       help="the daemon's control socket (default: $BANISH_SOCKET, else "
                            "/run/banish/banish.sock)")
        p.set_defaults(run=_runner(cmd))


def _runner(cmd: Command) -> Runner:
    def run(args: argparse.Namespace) -> int:
        request = cmd.translate(vars(args))
        return client.execute(request, path=socket_path(getattr(args, "socket", None)),
                              as_json=bool(args.json), stdin=sys.stdin, stdout=sys.stdout)

    run.__doc__ = f"banish {cmd.name}: {cmd.summary}"
    return run
