"""A generated month of ban history: three nodes, several jails, IPv4 and IPv6, repeat
offenders, user names. Shared by the report tests and bench/insight.py (seeded: the same
arguments give the same database)."""

from __future__ import annotations

import random
from pathlib import Path

from banish.events import Ban
from banish.store import insight as db
from banish.store.sqlite import SqliteStore

JAILS = ("sshd", "nginx-http-auth", "postfix-sasl", "dovecot", "recidive")
NODES = ("", "web2", "mail1")
"""Origins: "" is the node the database belongs to (the report calls it ``local``)."""
USERS = ("root", "admin", "ubuntu", "test", "oracle", "postgres", "git", "user", "pi")
START = 1_761_955_200.0  # 2025-11-01 00:00:00 UTC
MONTH = 30 * 86400


def _address(rng: random.Random) -> str:
    if rng.random() < 0.8:
        while True:
            a = rng.randrange(1, 224)
            if a not in (10, 100, 127, 169, 172, 192, 198, 203):
                return f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    prefix = rng.choice(("2001:4860", "2a02:1810", "2a10:8b40", "2c0f:ffc0", "2400:cb00",
                         "2600:1f18", "2804:14c", "2a01:4f8"))
    return f"{prefix}:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"


def generate(path: Path, bans: int, *, seed: int = 12, addresses: int | None = None,
             start: float = START, span: float = MONTH) -> None:
    """Write ``bans`` history rows (and the active bans the store keeps for them) to a new
    database at ``path``."""
    rng = random.Random(seed)
    pool = [_address(rng) for _ in range(addresses or max(10, bans // 3))]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(pool))]  # a few addresses come back
    chosen = rng.choices(pool, weights, k=bans)
    rows: list[Ban] = []
    users: list[tuple[str, str, float, str]] = []
    for address in chosen:
        jail = rng.choices(JAILS, (50, 20, 15, 10, 5))[0]
        at = round(start + rng.random() * span, 3)
        bantime = rng.choice((600, 3600, 86400)) if jail != "recidive" else 604800
        failures = rng.randrange(3, 12)
        origin = rng.choices(NODES, (50, 30, 20))[0]
        rows.append(Ban(address, jail, at, bantime, failures, origin=origin))
        if jail == "sshd" and rng.random() < 0.7:
            users.append((address, jail, at, rng.choice(USERS)))
    rows.sort(key=lambda b: b.banned_at)
    with SqliteStore(path) as store:
        for i in range(0, len(rows), 50_000):
            store.add_bans(rows[i:i + 50_000])
    conn = db.connect(str(path))
    db.save_users(conn, users)
    conn.close()
