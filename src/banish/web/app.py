"""The dashboard: a Starlette app over the ban database (read) and the daemon's control socket
(ban, unban, metrics).

Owns the HTTP surface and its guards:

- **Token.** Every route but ``/login`` and ``/static`` needs either the session cookie that
  ``POST /login`` with the right token sets (HttpOnly, SameSite=Strict), or
  ``Authorization: Bearer TOKEN`` (for Prometheus and scripts). Pages without it redirect to
  ``/login``; everything else is 401. Tokens compare in constant time.
- **CSRF.** A state-changing request from a session (``POST /api/ban``, ``/api/unban``,
  ``/logout``) must carry that session's CSRF token (``X-CSRF-Token`` header or ``csrf`` form
  field) and, when the browser sends one, an ``Origin`` equal to this server's: 403 otherwise.
  Bearer requests are not CSRF-prone (browsers never add that header by themselves).
- **Audit.** Each ban and unban from here is logged to banish's log as ``web: ... by
  CLIENT``, beside the daemon's own Ban/Unban lines.

Reads go to SQLite directly (WAL: never in the daemon's way), in worker threads. Live bans
come from the history table's growing ids (``/events``, server-sent events), so the daemon
needs no connection to us. Pages stay fast with 100,000 active bans: the table is paged
(``store/insight.active_page``). Static files and templates are inside the package.
Must not change bans except through the daemon's control socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..addr import canonical_address
from ..daemon.logsetup import NOTICE
from ..insight import html
from ..insight.geo import Geo
from ..insight.report import build
from ..protocol import Request as ControlRequest
from ..protocol import is_address
from ..store import insight as db

log = logging.getLogger("banish.server")

COOKIE = "banish_session"
PAGE_SIZE = 100
POLL = 0.5
"""Seconds between two looks at the history for the live view."""
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 1000
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _template(name: str) -> Template:
    return Template(resources.files("banish.web").joinpath("templates", name)
                    .read_text(encoding="utf-8"))


class Dashboard:
    """State of one ``banish web``: sessions, the database path, the daemon's socket."""

    def __init__(self, dbfile: str, socket_path: str, token: str, geoipdb: str) -> None:
        self.dbfile = dbfile
        self.socket_path = socket_path
        self.token = token
        self.geoipdb = geoipdb
        self.sessions: dict[str, tuple[str, float]] = {}
        """session id -> (its CSRF token, when it ends)."""
        self._geo: Geo | None = None
        self.index = _template("index.html")
        self.login_page = _template("login.html")

    # -- guards --------------------------------------------------------------------------

    def session(self, request: Request) -> tuple[str, str] | None:
        sid = request.cookies.get(COOKIE, "")
        found = self.sessions.get(sid)
        if found is None:
            return None
        csrf, ends = found
        if ends < time.time():
            del self.sessions[sid]
            return None
        return sid, csrf

    def bearer(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            value.strip().encode(), self.token.encode())

    def authorized(self, request: Request) -> bool:
        return self.bearer(request) or self.session(request) is not None

    async def csrf_ok(self, request: Request, form_value: str = "") -> bool:
        if self.bearer(request):
            return True
        found = self.session(request)
        if found is None:
            return False
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
            return False
        sent = request.headers.get("x-csrf-token", "") or form_value
        return bool(sent) and secrets.compare_digest(sent.encode(), found[1].encode())

    # -- helpers -------------------------------------------------------------------------

    async def read(self, fn: Any, *args: Any) -> Any:
        """Run a query function on a fresh connection in a worker thread."""
        def work() -> Any:
            conn = db.connect(self.dbfile)
            try:
                return fn(conn, *args)
            finally:
                conn.close()
        return await asyncio.to_thread(work)

    async def control(self, cmd: str, args: dict[str, Any]) -> Any:
        from ..cli.client import Client

        def work() -> Any:
            with Client(self.socket_path, timeout=30) as client:
                return client.call(ControlRequest(cmd, args))
        return await asyncio.to_thread(work)

    def geo(self) -> Geo:
        if self._geo is None:
            self._geo = Geo.open(self.geoipdb)
        return self._geo


def _client(request: Request) -> str:
    return f"{request.client.host}" if request.client else "unix socket"


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the login and logout forms), without python-multipart."""
    body = await request.body()
    if len(body) > 4096:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    return {k: v[0] for k, v in fields.items() if v}


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(*, dbfile: str, socket_path: str, token: str,
               geoipdb: str = "shipped") -> Starlette:
    d = Dashboard(dbfile, socket_path, token, geoipdb)

    async def login_form(request: Request) -> Response:
        return HTMLResponse(d.login_page.substitute(message=""))

    async def login(request: Request) -> Response:
        sent = (await _form(request)).get("token", "")
        if not secrets.compare_digest(sent.encode(), token.encode()):
            log.warning("web: refused sign-in from %s (wrong token)", _client(request))
            await asyncio.sleep(0.5)  # a guess costs time
            return HTMLResponse(d.login_page.substitute(
                message='<p class="error" id="login-error">Wrong token.</p>'), status_code=401)
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        if len(d.sessions) >= MAX_SESSIONS:  # forget ended sessions, then the oldest
            live = sorted((ends, k) for k, (_, ends) in d.sessions.items() if ends > now)
            d.sessions = {k: d.sessions[k] for _, k in live[-(MAX_SESSIONS // 2):]}
        d.sessions[sid] = (csrf, now + SESSION_TTL)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, sid, max_age=int(SESSION_TTL), httponly=True,
                            samesite="strict", path="/")
        return response

    async def logout(request: Request) -> Response:
        if not await d.csrf_ok(request, (await _form(request)).get("csrf", "")):
            return _error("missing or wrong CSRF token", 403)
        found = d.session(request)
        if found is not None:
            d.sessions.pop(found[0], None)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def index(request: Request) -> Response:
        found = d.session(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(d.index.substitute(csrf=found[1],
                                               host=html.esc(socket.gethostname())))

    async def active(request: Request) -> Response:
        try:
            page = max(0, int(request.query_params.get("page", "0")))
        except ValueError:
            return _error("page must be a number", 400)
        jail = request.query_params.get("jail") or None
        total, rows = await d.read(db.active_page, time.time(), page * PAGE_SIZE, PAGE_SIZE,
                                   jail)
        return JSONResponse({
            "total": total, "page": page, "pages": (total + PAGE_SIZE - 1) // PAGE_SIZE,
            "rows": [{"address": a, "jail": j, "banned_at": at, "bantime": bt, "origin": o}
                     for a, j, at, bt, o in rows]})

    async def report(request: Request) -> Response:
        from ..cli.report import parse_when
        from ..errors import ConfigError

        now = time.time()
        try:
            since = parse_when(request.query_params.get("since", "30d"), now, "since")
        except ConfigError as exc:
            return _error(str(exc), 400)
        rep = await d.read(lambda conn: build(conn, db.Scope(since, now + 1), geo=d.geo,
                                              now=now))
        return JSONResponse({**rep, "charts": html.charts(rep)})

    async def search(request: Request) -> Response:
        text = request.query_params.get("address", "").strip()
        address = canonical_address(text) if is_address(text) else None
        if address is None:
            return _error(f"not an IP address or network: {text[:60]!r}", 400)

        def look(conn: Any) -> dict[str, Any]:
            origin = db.origins(conn, [address]).get(address)
            history = db.address_history(conn, address)
            active = conn.execute(
                "SELECT jail, banned_at, bantime, origin FROM active_bans WHERE address = ? "
                "AND (expires_at IS NULL OR expires_at > ?)", [address, time.time()]).fetchall()
            return {"address": address,
                    "origin": origin._asdict() if origin is not None else None,
                    "active": [{"jail": j, "banned_at": at, "bantime": bt, "origin": o}
                               for j, at, bt, o in active],
                    "history": [{"jail": j, "banned_at": at, "bantime": bt, "failures": f,
                                 "origin": o, "matches": m} for j, at, bt, f, o, m in history]}
        return JSONResponse(await d.read(look))

    async def change(request: Request, cmd: str) -> Response:
        if not await d.csrf_ok(request):
            log.warning("web: refused %s from %s (missing or wrong CSRF token)", cmd,
                        _client(request))
            return _error("missing or wrong CSRF token", 403)
        try:
            body = json.loads(await request.body())
            address = str(body["address"]).strip()
            jail = body.get("jail") or None
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error('expected JSON {"address": ..., "jail": ...}', 400)
        if not is_address(address) or (jail is not None and not isinstance(jail, str)):
            return _error("not an IP address or network", 400)
        if cmd == "ban" and not jail:
            return _error("ban needs a jail", 400)
        args: dict[str, Any] = ({"jail": jail, "ips": [address]} if cmd == "ban" else
                                {"ips": [address], "jail": jail, "all": False})
        try:
            result = await d.control(cmd, args)
        except Exception as exc:  # CommandError / DaemonUnavailable: one line back
            return _error(str(exc), 502)
        log.log(NOTICE, "web: %s %s%s by %s", cmd, address, f" in {jail}" if jail else "",
                _client(request))
        return JSONResponse(result)

    async def ban(request: Request) -> Response:
        return await change(request, "ban")

    async def unban(request: Request) -> Response:
        return await change(request, "unban")

    async def events(request: Request) -> Response:
        try:  # a reconnecting browser says where it was
            last = int(request.headers.get("last-event-id", "0") or 0)
        except ValueError:
            last = 0
        last = last or await d.read(db.last_history_id)

        async def stream() -> AsyncIterator[str]:
            nonlocal last
            yield "retry: 2000\n\n"
            quiet = 0.0
            while not await request.is_disconnected():
                rows = await d.read(db.history_after, last)
                for hid, address, jail, at, bantime, failures, origin in rows:
                    last = hid
                    data = json.dumps({"id": hid, "address": address, "jail": jail,
                                       "banned_at": at, "bantime": bantime,
                                       "failures": failures, "origin": origin})
                    yield f"id: {hid}\nevent: ban\ndata: {data}\n\n"
                quiet = 0.0 if rows else quiet + POLL
                if quiet >= 15:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(POLL)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def metrics(request: Request) -> Response:
        try:
            text = await d.control("metrics", {})
        except Exception as exc:
            return PlainTextResponse(f"# banish daemon unavailable: {exc}\n", status_code=503)
        return PlainTextResponse(str(text), media_type="text/plain; version=0.0.4")

    public = {"/login", "/static"}

    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if not any(path == p or path.startswith(p + "/") for p in public) \
                and not d.authorized(request):
            if path == "/":
                return RedirectResponse("/login", status_code=303)
            return _error("sign in first (token)", 401)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    static = StaticFiles(directory=str(resources.files("banish.web").joinpath("static")))
    app = Starlette(middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)], routes=[
        Route("/", index), Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]), Route("/logout", logout, methods=["POST"]),
        Route("/api/active", active), Route("/api/report", report),
        Route("/api/search", search), Route("/api/ban", ban, methods=["POST"]),
        Route("/api/unban", unban, methods=["POST"]), Route("/events", events),
        Route("/metrics", metrics), Mount("/static", static, name="static"),
    ])
    app.state.dashboard = d
    return app
