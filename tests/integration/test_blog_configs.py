"""Configurations as blog posts write them run: Debian's unchanged /etc/fail2ban tree plus a
jail.local with an inline ``# comment``, its postfix jail banning a relay-denied botnet address
through fail2ban's own nftables action, inside a network namespace made for the test."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, wait_for
from tests.integration.netns import namespace, skip_reason

F2B = "/etc/fail2ban"
pytestmark = [
    pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
    pytest.mark.skipif(not os.path.isdir(os.path.join(F2B, "action.d")),
                       reason="Debian's fail2ban package is not installed"),
]

# As in "How to protect a mail server with fail2ban" posts: comments after values included.
JAIL_LOCAL = """
[DEFAULT]
ignoreip = 127.0.0.1/8 ::1   # suggest listing your valid server IP ranges here
bantime  = 1h
findtime = 10m
maxretry = 3
banaction = nftables-multiport

[postfix]
enabled  = true
mode     = more    # normal, more, aggressive
logpath  = {logs}/mail.log
backend  = polling
"""


def relay_denied(ip: str, n: int) -> str:
    stamp = time.strftime("%b %e %H:%M:%S")
    return (f"{stamp} mail postfix/smtpd[{4000 + n}]: NOQUEUE: reject: RCPT from "
            f"unknown[{ip}]: 554 5.7.1 <spam{n}@example.net>: Relay access denied; "
            f"from=<bot@example.com> to=<spam{n}@example.net> proto=ESMTP helo=<bot{n}>")


def test_postfix_jail_with_inline_comments_bans_a_relay_botnet_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with namespace() as server:
        monkeypatch.setenv("BANISH_NETNS", server.name)
        with Daemon(tmp_path, "") as d:
            # Debian's tree behind symlinks (never written), our jail.local beside it; the
            # test's banish.conf (socket, store, log in tmp) stays.
            shutil.rmtree(d.cfg / "filter.d")
            (d.cfg / "jail.conf").unlink()
            for name in os.listdir(F2B):
                if name not in ("jail.d", "jail.local", "fail2ban.local"):
                    (d.cfg / name).symlink_to(os.path.join(F2B, name))
            (d.cfg / "jail.local").write_text(JAIL_LOCAL.replace("{logs}", str(d.logs)))
            (d.logs / "mail.log").write_text("")
            check = d.cli("check", "--config", str(d.cfg), check=False)
            assert check.returncode == 0, check.stdout + check.stderr
            assert "inline comment" in check.stdout + check.stderr
            d.start()
            ignoreip = json.loads(d.cli("get", "postfix", "ignoreip", "--json").stdout)["value"]
            assert sorted(ignoreip) == ["127.0.0.0/8", "::1/128"]  # no "suggest", "listing"...
            d.append("mail.log", *(relay_denied("203.0.113.77", n) for n in range(3)))
            wait_for(lambda: "203.0.113.77" in d.bans(), what="the botnet address's ban")
            wait_for(lambda: "203.0.113.77" in server.nft("list", "ruleset"),
                     what="fail2ban's nftables action to hold the address")
            assert "inline comment" in d.log_text()
            d.stop()
        # fail2ban's actionstop removed its table on the way out, as fail2ban does.
        assert "203.0.113.77" not in server.nft("list", "ruleset")
