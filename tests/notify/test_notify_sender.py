"""The sender and the action set in one process: reload keeps, restarts or stops actions
without losing what their outboxes hold; a failing receiver is retried with back-off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from banish.config.notify import compile_notify
from banish.daemon.stream import EventStream
from banish.events import Ban, BanEvent, EventKind
from banish.notify.subscriber import Notifications
from banish.store.sqlite import SqliteStore


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def bans(*ips: str) -> BanEvent:
    return BanEvent(EventKind.BAN, time.time(), tuple(Ban(ip, "sshd", time.time(), 60)
                                                      for ip in ips))


def test_reload_keeps_restarts_and_stops_actions_and_keeps_their_items(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    failing = compile_notify("banish-exec", {"cmd": "/bin/false", "retry": "0.1s",
                                             "retrymax": "0.2s", "name": "tell"}, "sshd")
    working = compile_notify("banish-exec", {"cmd": f"/bin/sh -c 'cat >> {out}'",
                                             "name": "tell"}, "sshd")
    log = compile_notify("banish-jsonlog", {"path": str(tmp_path / "j.json")}, "sshd")

    async def main() -> None:
        with SqliteStore(tmp_path / "db.sqlite3") as store:
            stream = EventStream()
            n = Notifications(store)
            await n.configure(stream, [failing, log])
            kept = n.senders["banish-jsonlog"]
            stream.publish(bans("192.0.2.1", "192.0.2.2"))
            await until(lambda: n.senders["tell"].failures >= 2)
            status = {s["name"]: s for s in n.status()}
            assert status["tell"]["pending"] == 2 and "exited with status 1" in \
                status["tell"]["last_error"]
            assert status["tell"]["retry_in"] <= 0.2
            # The same name, fixed: a new sender on the same outbox sends what waited.
            await n.configure(stream, [working, log])
            assert n.senders["banish-jsonlog"] is kept
            await until(lambda: out.exists() and out.read_text().count("\n") == 2)
            await until(lambda: n.senders["tell"].pending == 0)
            # Removed while items wait: they stay, counted as unconfigured.
            await n.configure(stream, [failing])
            stream.publish(bans("192.0.2.3"))
            await until(lambda: n.senders["tell"].failures >= 1)
            await n.configure(stream, [log])
            assert {s["name"]: s["pending"] for s in n.status()} == {
                "banish-jsonlog": 0, "tell": 1}
            assert [s.get("unconfigured") for s in n.status()] == [None, True]
            await stream.close()
            await n.stop()

    asyncio.run(main())
