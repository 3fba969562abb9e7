"""``banish scan`` tells the truth on real-shaped logs: years from the clock, windows on log time.

The oracle is independent of banish's core: the failures come from ``banish regex --json`` (the
matcher, tested against fail2ban elsewhere) and the expected bans from a plain sliding window
over each address's failure times, written here.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from banish.daemon.hostaddrs import own_addresses

NOW = 1_796_505_600.0  # 2026-12-05 21:20:00 UTC
ENV = {**os.environ, "TZ": "UTC"}


def banish(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "banish.cli.main", *args], capture_output=True,
                          text=True, env=ENV, check=check, timeout=120)


def syslog(t: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.gmtime(t))


def test_yearless_dates_of_today_are_this_year_and_both_attackers_are_banned(
        tmp_path: Path) -> None:
    """The issue's report: 6 failures within seconds today, 6 on Nov 20: 2 bans, not 0."""
    log = tmp_path / "now.log"
    nov20 = 1_795_168_801.0  # 2026-11-20 10:00:01 UTC
    lines = [f"{syslog(nov20 + i)} web sshd[{200 + i}]: Failed password for root from "
             f"192.0.2.10 port 4242 ssh2" for i in range(6)]
    lines += [f"{syslog(NOW - 60 + i)} web sshd[{100 + i}]: Failed password for root from "
              f"192.0.2.9 port 4242 ssh2" for i in range(6)]
    log.write_text("\n".join(lines) + "\n")
    done = banish("scan", "--jail", "sshd", "--now", str(NOW), "--json", str(log))
    doc = json.loads(done.stdout)
    assert sorted(b["ip"] for b in doc["bans"]) == ["192.0.2.10", "192.0.2.9"]
    (jail,) = doc["jails"]
    assert (jail["first"], jail["last"]) == ("2026-11-20T10:00:01", "2026-12-05T21:19:05")
    # Without --now the real clock places the dates (never 1969).
    human = banish("scan", "--jail", "sshd", str(log)).stdout
    assert "1969" not in human and "2 bans" in human


def test_a_missing_log_is_an_error(tmp_path: Path) -> None:
    done = banish("scan", str(tmp_path / "nope.log"), check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == f"banish: {tmp_path / 'nope.log'}: no such file"


# -- a real attacked server's auth.log, in shape ----------------------------------------------
# Shaped like the public LabSZ OpenSSH log many papers use (yearless syslog dates, one host,
# 2,000 lines, a third of them failures, one address with ~300 failures over four hours, dozens
# of scanners with a handful each, and the noise around them). Generated, not copied.

_NOISE = [
    "Connection closed by {ip} [preauth]",
    "Received disconnect from {ip}: 11: Bye Bye [preauth]",
    "pam_unix(sshd:auth): check pass; user unknown",
    "input_userauth_request: invalid user {user} [preauth]",
    "Accepted password for fztu from 119.137.62.142 port 49116 ssh2",
    "pam_unix(sshd:session): session opened for user fztu by (uid=0)",
]
_FAIL = [
    "Failed password for invalid user {user} from {ip} port {port} ssh2",
    "Failed password for root from {ip} port {port} ssh2",
    "Invalid user {user} from {ip}",
]
_USERS = ["admin", "test", "oracle", "webmaster", "support", "ubnt", "git", "pi"]


def shaped_auth_log(seed: int) -> tuple[list[str], str]:
    rng = random.Random(seed)
    start = NOW - 5 * 3600
    events: list[tuple[float, str]] = []
    attacker = "183.62.140.253"
    for i in range(295):  # one address: hundreds of failures in four hours
        events.append((start + i * 4 * 3600 / 295 + rng.random(), attacker))
    scanners = [f"{rng.choice([5, 45, 61, 103, 112, 185, 221])}.{rng.randrange(1, 255)}."
                f"{rng.randrange(1, 255)}.{rng.randrange(1, 255)}" for _ in range(60)]
    for ip in scanners:  # bursts, slow drips and one-offs
        kind = rng.random()
        count = rng.randrange(1, 12)
        spread = 60 if kind < 0.4 else 900 if kind < 0.7 else 4 * 3600
        first = start + rng.random() * 4 * 3600
        for _ in range(count):
            events.append((first + rng.random() * spread, ip))
    events.sort()
    lines: list[str] = []
    pid = 24200
    for t, ip in events:
        pid += rng.randrange(1, 5)
        template = rng.choice(_FAIL)
        text = template.format(ip=ip, user=rng.choice(_USERS), port=rng.randrange(1024, 65535))
        lines.append(f"{syslog(t)} LabSZ sshd[{pid}]: {text}")
        for _ in range(rng.randrange(0, 3)):
            noise = rng.choice(_NOISE).format(ip=ip, user=rng.choice(_USERS))
            lines.append(f"{syslog(t)} LabSZ sshd[{pid}]: {noise}")
    return lines, attacker


def expected_bans(failures: list[tuple[str, float]], maxretry: int, findtime: float) -> set[str]:
    """Addresses with maxretry failures inside some window of findtime seconds (inclusive)."""
    times: dict[str, list[float]] = defaultdict(list)
    for ip, t in failures:
        times[ip].append(t)
    out = set()
    for ip, ts in times.items():
        ts.sort()
        if any(ts[i + maxretry - 1] - ts[i] <= findtime for i in range(len(ts) - maxretry + 1)):
            out.add(ip)
    return out


@pytest.mark.parametrize("seed, maxretry, findtime", [(1, 5, 600), (2, 3, 600), (3, 5, 3600)])
def test_scan_bans_exactly_the_addresses_with_maxretry_failures_in_a_window(
        tmp_path: Path, seed: int, maxretry: int, findtime: int) -> None:
    lines, attacker = shaped_auth_log(seed)
    assert len(lines) > 600
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")
    matched = [json.loads(line) for line in banish(
        "regex", "--now", str(NOW), "--json", str(log), "sshd").stdout.splitlines()]
    failures = []
    for m in matched:
        if m["match"]:
            t = time.mktime(time.strptime(m["time"], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            failures.append((m["host"], float(int(t))))
    assert len(failures) > 300
    assert not {ip for ip, _ in failures} & set(own_addresses())
    expected = expected_bans(failures, maxretry, findtime)
    assert attacker in expected and len(expected) > 5
    assert len(expected) < len({ip for ip, _ in failures})  # some addresses stay below
    doc = json.loads(banish("scan", "--jail", "sshd", "--now", str(NOW), "--maxretry",
                            str(maxretry), "--findtime", str(findtime), "--json",
                            str(log)).stdout)
    banned = {b["ip"] for b in doc["bans"]}
    assert banned == expected
    # The big attacker is banned again after each ban ends, not once.
    assert sum(1 for b in doc["bans"] if b["ip"] == attacker) > 1
