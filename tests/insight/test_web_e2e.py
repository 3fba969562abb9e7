"""``banish web`` end to end in Debian's headless Chromium, against the real daemon enforcing
with nftables inside a network namespace this test creates: sign in with the token, see a ban
appear live when the daemon bans, search the address, unban it from the page (the kernel set
loses it), and be refused without the token or without the CSRF token."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, wait_for
from tests.integration.netns import namespace, skip_reason

from .browser import artifacts, browser  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = nftables
port = 8022
protocol = tcp
maxretry = 2
findtime = 10m
bantime = 1h
"""
TOKEN = "e2e-dashboard-token-0123456789"
ATTACKER = "191.251.128.1"  # an address whose origin the shipped data documents (BR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening yet


def in_kernel(ns: Any, address: str) -> bool:
    return address in ns.nft("list", "table", "inet", "banish")


def test_dashboard_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              browser: Any) -> None:  # noqa: F811 - the fixture
    with namespace() as ns:
        monkeypatch.setenv("BANISH_NETNS", ns.name)
        with Daemon(tmp_path, JAILS) as d:
            d.start()
            token_file = tmp_path / "web.token"
            token_file.write_text(TOKEN + "\n")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            web = subprocess.Popen(
                [sys.executable, "-m", "banish.cli.main", "web", "--config", str(d.cfg),
                 "--port", str(port), "--token-file", str(token_file), "--socket",
                 str(d.socket)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_for(lambda: web.poll() is not None or http(base + "/login")[0] == 200,
                         what="banish web listening")
                assert web.poll() is None
                run(d, ns, base, browser)
            finally:
                web.terminate()
                web.wait(15)
                if web.stderr is not None:
                    web.stderr.close()
            d.stop()


def run(d: Daemon, ns: Any, base: str, browser: Any) -> None:  # noqa: F811
    # Refused without the token: pages redirect to the sign-in form, the rest is 401.
    assert http(base + "/api/active")[0] == 401
    assert http(base + "/metrics")[0] == 401
    assert http(base + "/api/unban", data=json.dumps({"address": ATTACKER}).encode(),
                headers={"Content-Type": "application/json"})[0] == 401

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.fill("#token", "not-the-token-at-all")
    page.click("#signin")
    page.wait_for_selector("#login-error")
    problems.clear()  # the refused sign-in's 401 is logged by the browser, as it should be
    page.fill("#token", TOKEN)
    page.click("#signin")
    page.wait_for_url(base + "/")
    page.wait_for_selector("#live-state:text-is('live')")  # (no eval: the page's CSP)

    # The daemon bans from its log; the page shows it live (server-sent events).
    d.fail("a.log", ATTACKER, 2)
    page.wait_for_selector(f"#live li.live-ban:has-text('{ATTACKER}')", timeout=20_000)
    wait_for(lambda: in_kernel(ns, ATTACKER), what="the kernel set holds the ban")
    page.wait_for_selector(f"#active tbody td:has-text('{ATTACKER}')")
    page.wait_for_selector("#charts svg.chart[data-chart='world'] circle.dot")

    # Search: the address's origin and history.
    page.fill("#search", ATTACKER)
    page.press("#search", "Enter")
    page.wait_for_selector("#result-address")
    assert page.text_content("#result-address") == ATTACKER
    page.wait_for_selector("#result-origin:has-text('BR')")
    assert "TELEFONICA BRASIL" in (page.text_content("#result-origin") or "")
    history = page.text_content("#result-history") or ""
    assert "demo" in history and "login failed" in history
    page.screenshot(path=str(artifacts() / "dashboard.png"), full_page=True)

    # Without the CSRF token the session cookie alone changes nothing.
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in context.cookies())
    status, _ = http(base + "/api/unban", data=json.dumps({"address": ATTACKER}).encode(),
                     headers={"Content-Type": "application/json", "Cookie": cookie})
    assert status == 403
    status, _ = http(base + "/api/unban", data=json.dumps({"address": ATTACKER}).encode(),
                     headers={"Content-Type": "application/json", "Cookie": cookie,
                              "X-CSRF-Token": "forged"})
    assert status == 403
    assert in_kernel(ns, ATTACKER)

    # Unban from the page: the daemon lifts it, the kernel set loses it, the log says who.
    page.click("#result-active button.unban")
    wait_for(lambda: not in_kernel(ns, ATTACKER), what="the kernel set loses the ban")
    wait_for(lambda: ATTACKER in d.bans("Unban"), what="the daemon's Unban line")
    wait_for(lambda: f"web: unban {ATTACKER}" in d.log_text(), what="the audit line")
    page.wait_for_selector("#result-active li:has-text('not banned now')")

    # /metrics with the session (and for Prometheus, the bearer token).
    status, text = http(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and 'banish_unbans_total{jail="demo",kind="unban"} 1.0' in text
    time.sleep(0.2)
    assert problems == []
    context.close()
