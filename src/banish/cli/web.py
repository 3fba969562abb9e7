"""``banish web``: the local dashboard (``web/app.py``) served by uvicorn.

Owns the command line: where to listen (127.0.0.1:8467 by default, or a Unix socket for a
reverse proxy), the token (``--token-file``, else a new random one written to a 0600 file
beside the store and printed once), and where the store and the daemon's socket are.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from ..errors import ConfigError

DEFAULT_PORT = 8467
GRACE = 3
"""Seconds open connections (a browser's live view never ends by itself) get at a stop."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="DIR", help="config directory (store, socket)")
    p.add_argument("--db", metavar="PATH", help="the store to read (overrides dbfile)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    p.add_argument("--uds", metavar="PATH", help="listen on this Unix socket instead")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the access token (created, 0600, when missing)")
    p.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                   help="the daemon's control socket (ban, unban, metrics)")


def load_token(path: str) -> str:
    """The token in ``path``; a new random one (0600) when the file does not exist yet."""
    try:
        with open(path, encoding="ascii") as fh:
            token = fh.read().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
        print(f"banish web: new access token written to {path}", file=sys.stderr)
    if len(token) < 16:
        raise ConfigError("the token must be at least 16 characters", file=path)
    return token


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..config.loader import load_daemon_settings
    from ..paths import default_config_dir
    from ..web.app import create_app

    config_dir = args.config or default_config_dir()
    settings = load_daemon_settings(config_dir) if os.path.isdir(config_dir) else None
    dbfile = args.db or (settings.dbfile if settings else "")
    if not dbfile or not os.path.exists(dbfile):
        raise ConfigError("no ban database here (is banish running? --db PATH)",
                          file=dbfile or "-", option="--db")
    sock = (getattr(args, "socket", None) or os.environ.get("BANISH_SOCKET")
            or (settings.socket if settings else ""))
    token_file = args.token_file or os.path.join(os.path.dirname(os.path.abspath(dbfile)),
                                                 "web.token")
    if settings is not None:  # audit lines go to banish's own log, beside the daemon's
        from ..daemon.logsetup import setup_logging

        setup_logging(settings.logtarget, settings.loglevel)
    app = create_app(dbfile=dbfile, socket_path=sock, token=load_token(token_file),
                     geoipdb=settings.geoipdb if settings else "shipped")
    if args.uds:
        uvicorn.run(app, uds=args.uds, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=GRACE)
    else:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=GRACE)
    return 0
