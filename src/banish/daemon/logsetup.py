"""banish's own log: shapes the recidive filter reads, written where ``logtarget`` says.

Lines look like ``2026-11-24 22:31:05,123 banish.actions [1234]: NOTICE  [sshd] Ban 192.0.2.7``
(and ``Unban``, ``INFO    [sshd] Found 192.0.2.7 - 2026-11-24 22:31:05``), which is also the
shape fail2ban writes, so a recidive jail keeps working for users who switch.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

_FORMAT = "%(asctime)s %(name)s [%(process)d]: %(levelname)-7s %(message)s"


def setup_logging(target: str, level: str = "INFO") -> None:
    """Send the ``banish`` loggers to ``target``: a file path, STDOUT, STDERR or SYSLOG."""
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
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(_level(level))
    root.propagate = False


def _level(name: str) -> int:
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO
