"""banish's own log: shapes the recidive filter reads, written where ``logtarget`` says.

Lines look like ``2026-11-24 22:31:05,123 banish.actions [1234]: NOTICE  [sshd] Ban 192.0.2.7``
(and ``Unban``, ``INFO    [sshd] Found 192.0.2.7 - 2026-11-24 22:31:05``), which is also the
shape fail2ban writes, so a recidive jail keeps working for users who switch.

Also owns the terminal echo: ``banish run`` started by hand on a terminal shows the same lines
there as well (a service's stderr is no terminal, so systemd's journal does not get them
twice). Must not decide where logs go beyond what ``logtarget`` and that echo say.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import TextIO

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

_FORMAT = "%(asctime)s %(name)s [%(process)d]: %(levelname)-7s %(message)s"
_STREAMS = ("STDOUT", "-", "STDERR")

_echo: TextIO | None = None
"""Where log lines are echoed besides ``logtarget`` (a terminal), or None.

Module state rather than an argument because the runtime calls ``setup_logging`` again on
every reload that changes ``logtarget``: how the process was started must outlive that."""


def echo_to_terminal(stream: TextIO) -> bool:
    """From the next ``setup_logging`` on, also write every log line to ``stream`` if it is
    a terminal (else stop echoing); returns whether it is."""
    global _echo
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        tty = False
    _echo = stream if tty else None
    return tty


def setup_logging(target: str, level: str = "INFO") -> None:
    """Send the ``banish`` loggers to ``target``: a file path, STDOUT, STDERR or SYSLOG, and
    to the terminal ``echo_to_terminal`` set, unless ``target`` is a standard stream already."""
    root = logging.getLogger("banish")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    upper = target.upper()
    handler: logging.Handler
    if upper in ("STDOUT", "-"):
        handler = logging.StreamHandler(sys.stdout)
    elif upper == "STDERR":
        handler = logging.StreamHandler(sys.stderr)
    elif upper == "SYSLOG":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(target, encoding="utf-8")
    handlers = [handler]
    if _echo is not None and upper not in _STREAMS:
        handlers.append(logging.StreamHandler(_echo))  # close() leaves the stream open
    for h in handlers:
        h.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(h)
    root.setLevel(_level(level))
    root.propagate = False


def _level(name: str) -> int:
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO
