"""The ban event stream: every change to the active bans, delivered to each subscriber.

Owns publishing (`EventStream.publish`, called by the enforcer once the store and the firewall
hold a change) and delivery: each subscriber has its own bounded queue and its own task, so a
slow or failing subscriber never delays the firewall or another subscriber; events reach a
subscriber in the order they were published (so an address's ban comes before its unban).
Must not decide or apply bans.

The contract a subscriber (action.d scripts now; fleet, notifications, enrichment and metrics
next) can rely on, written out in ARCHITECTURE.md:

- ``handle(event)`` is awaited for one event at a time, in publish order. An exception is
  logged and counted and the next event follows; it never reaches the publisher.
- The queue holds ``capacity`` events (an event is a batch: a 100,000-address bulk ban is one).
  When it is full, a subscriber that gave ``resync`` (a state consumer, such as a firewall
  script runner) has its queue dropped and ``resync()`` awaited: it reads the current truth
  (the enforcer's active bans) instead of the missed history, so nothing is lost; one without
  ``resync`` loses the event, counted as ``dropped`` (a subscriber promising delivery keeps
  its own durable outbox, filled from ``handle``, so its ``handle`` is quick).
- `request_resync` asks for the same catch-up without an overflow (a failed script run).
- ``status()`` shows every subscriber's queue depth, how late it is, and what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..events import BanEvent

log = logging.getLogger("banish.server")

Handler = Callable[[BanEvent], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]

DEFAULT_CAPACITY = 4096


@dataclass(slots=True)
class _Counters:
    delivered: int = 0
    dropped: int = 0
    resyncs: int = 0
    errors: int = 0
    last_error: str = ""


class Subscription:
    """One subscriber's queue and delivery task."""

    def __init__(self, name: str, handle: Handler, resync: Resync | None, capacity: int) -> None:
        self.name = name
        self._handle = handle
        self._resync = resync
        self._capacity = capacity
        self._queue: deque[tuple[float, BanEvent]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._needs_resync = False
        self._busy_since: float | None = None
        self.counters = _Counters()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._deliver(), name=f"subscriber:{self.name}")

    def offer(self, event: BanEvent) -> None:
        """Queue without ever waiting; see the module docstring for a full queue."""
        if len(self._queue) >= self._capacity:
            if self._resync is not None:
                if not self._needs_resync:
                    log.warning("subscriber %s is %d events behind: it will catch up from the "
                                "active bans", self.name, len(self._queue))
                self._queue.clear()
                self._needs_resync = True
            else:
                if self.counters.dropped == 0 or self.counters.dropped % 1000 == 0:
                    log.error("subscriber %s is too slow: events dropped (%d so far)",
                              self.name, self.counters.dropped + 1)
                self.counters.dropped += 1
                return
        self._queue.append((time.monotonic(), event))
        self._idle.clear()
        self._wake.set()

    def request_resync(self) -> None:
        if self._resync is not None:
            self._needs_resync = True
            self._idle.clear()
            self._wake.set()

    async def _deliver(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._needs_resync or self._queue:
                self._busy_since = time.monotonic()
                if self._needs_resync and self._resync is not None:
                    self._needs_resync = False
                    self.counters.resyncs += 1
                    await self._guarded(self._resync())
                    continue
                _, event = self._queue.popleft()
                if await self._guarded(self._handle(event)):
                    self.counters.delivered += 1
            self._busy_since = None
            self._idle.set()

    async def _guarded(self, work: Awaitable[None]) -> bool:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.counters.errors += 1
            self.counters.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("subscriber %s failed", self.name)
            return False
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued was handled, at most ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        oldest = self._queue[0][0] if self._queue else self._busy_since
        c = self.counters
        return {"name": self.name, "queued": len(self._queue), "delivered": c.delivered,
                "dropped": c.dropped, "resyncs": c.resyncs, "errors": c.errors,
                "last_error": c.last_error,
                "lag": round(now - oldest, 3) if oldest is not None else 0.0}


class EventStream:
    """Subscribers by name; `publish` hands an event to each of them."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, Subscription] = {}
        self.published = 0
        self.last_published = 0.0
        """When the last event was published (monotonic): subscribers whose work can wait a
        moment (notifications) let a burst of bans through first."""

    def subscribe(self, name: str, handle: Handler, *, resync: Resync | None = None,
                  capacity: int = DEFAULT_CAPACITY) -> Subscription:
        """Add a subscriber; it receives events published from now on."""
        if name in self._subscriptions:
            raise ValueError(f"subscriber {name!r} exists")
        sub = Subscription(name, handle, resync, capacity)
        self._subscriptions[name] = sub
        sub.start()
        return sub

    async def unsubscribe(self, name: str) -> None:
        sub = self._subscriptions.pop(name, None)
        if sub is not None:
            await sub.close()

    def get(self, name: str) -> Subscription | None:
        return self._subscriptions.get(name)

    def publish(self, event: BanEvent) -> None:
        """Hand ``event`` to every subscriber; returns at once, whatever they do."""
        self.published += 1
        self.last_published = time.monotonic()
        for sub in self._subscriptions.values():
            sub.offer(event)

    async def drain(self, timeout: float) -> bool:
        """Wait (bounded) until every subscriber has handled what it was given."""
        results = await asyncio.gather(*(s.drain(timeout) for s in self._subscriptions.values()))
        return all(results)

    async def close(self) -> None:
        for name in list(self._subscriptions):
            await self.unsubscribe(name)

    def status(self) -> list[dict[str, Any]]:
        return [s.status() for s in self._subscriptions.values()]
