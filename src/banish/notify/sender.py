"""One notification action at work: the stream's events into its outbox, the outbox out.

Owns both halves of an action. `handle` (the action's stream subscriber) keeps only the
notices the action's context accepts and writes them to the action's durable outbox (a worker
thread; it never sends, so it stays quick and the stream never drops its events). The sender
task reads the outbox in order and asks the `Pacer` what to send: the next item(s), a digest,
or nothing yet. A send that works advances the outbox in the same breath; one that fails is
retried after a back-off that doubles (``retry`` .. ``retrymax``), logged at its first failure,
every ``REMIND`` seconds while it lasts and at its recovery, and shown in ``status``. Items
older than ``maxage`` are dropped with an error line.

Delivery is at least once, and once in practice: an item leaves the outbox only after its
receiver took it, so a restart or kill -9 sends what was pending; only a kill in the instant
between the receiver's answer and the outbox's commit repeats a send, and that repeat carries
the same ``X-Banish-Delivery`` / Message-ID key. Must not decide bans or block the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..config.notify import NotifyAction
from ..events import BanEvent, EventKind
from ..store.base import StoreError
from ..store.notify_outbox import NotifyOutbox, OutboxRow, encode_chunks
from .channel import Channel, DeliveryError
from .context import quiet_until
from .notice import Notice, select
from .pacing import NEVER, Pacer, Step

log = logging.getLogger("banish.notify")

MAX_DIGEST = 10_000
"""Items one digest carries at most; more go in the next one."""
REMIND = 300.0
"""Seconds between log lines while a receiver keeps failing."""
STORE_RETRY = 5.0
LINGER = 0.25
"""Seconds of calm (no new event) a per-event send waits for, at most ``MAX_LINGER`` after
its item was queued: during a wave the daemon's time goes to the bans first, and a webhook
batch fills up instead of going out one ban at a time."""
MAX_LINGER = 2.0


BURST_QUIET = 0.2
BURST_WAIT = 2.0
"""Seconds a notification's queueing waits at most for a burst of bans to pass."""

class ActionSender:
    """One action (``name``) for the bans of ``jails``."""

    def __init__(self, action: NotifyAction, jails: frozenset[str], channel: Channel,
                 outbox: NotifyOutbox, clock: Callable[[], float] = time.time,
                 last_published: Callable[[], float] | None = None) -> None:
        self.action = action
        self.name = action.name
        self.jails = jails
        self.channel = channel
        self._outbox = outbox
        self._clock = clock
        self.pacer = Pacer(action.delivery)
        self._last_published = last_published
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._retry_at = 0.0
        self._last_reminder = 0.0
        self._last_event = 0.0
        self.pending = 0
        self.oldest: float | None = None
        self.sent = self.messages = self.digests = self.expired = 0
        self.failures = self.errors = 0
        self.last_error = ""

    # -- the stream's side ---------------------------------------------------------------

    async def handle(self, event: BanEvent) -> None:
        if event.kind is EventKind.RELOAD or not event.bans:
            return
        now = self._clock()
        await self._after_the_burst()
        # Choosing, encoding and committing all happen in a worker thread: a 100,000-ban bulk
        # must not hold the event loop (the ban's own answer is still on its way out).
        count = await asyncio.to_thread(self._queue, event, now)
        if not count:
            return
        self.pending += count
        self._last_event = now
        if self.oldest is None:
            self.oldest = now
        self._wake.set()

    async def _after_the_burst(self) -> None:
        """While bans are still being published (a bulk load arrives in slices), wait -- at
        most BURST_WAIT s -- for a pause of BURST_QUIET s: the outbox's commit would take the
        store's write lock from the next slice's bans, and its encoding the GIL."""
        if self._last_published is None:
            return
        deadline = time.monotonic() + BURST_WAIT
        while time.monotonic() < deadline:
            quiet = time.monotonic() - self._last_published()
            if quiet >= BURST_QUIET:
                return
            await asyncio.sleep(BURST_QUIET - quiet)

    def _queue(self, event: BanEvent, now: float) -> int:
        bans = select(event, self.jails, self.action.context)
        if bans:
            self._outbox.add(self.name, now, (event.kind.value, event.reason, event.time),
                             encode_chunks(bans))
        return len(bans)

    # -- the sender's side ---------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"notify:{self.name}")

    async def stop(self, grace: float = 0.0) -> None:
        """Stop sending; a send under way gets ``grace`` seconds to finish, so a shutdown
        rarely cuts one off after the receiver took it (which would send it again)."""
        if self._task is not None:
            if grace > 0 and not self._idle.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), grace)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await self._refresh()
        while True:
            self._wake.clear()
            try:
                delay, wakeable = await self._step()
            except StoreError as exc:
                log.error("notify %s: %s (retried)", self.name, exc)
                delay, wakeable = STORE_RETRY, False
            except Exception as exc:  # a channel bug must not end the action for good
                log.exception("notify %s failed", self.name)
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay, wakeable = STORE_RETRY, False
            if delay <= 0:
                continue
            if not wakeable:
                await asyncio.sleep(delay)
            elif delay == NEVER:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _refresh(self) -> None:
        backlog = await asyncio.to_thread(self._outbox.backlog, self.name)
        self.pending, self.oldest = backlog.items, backlog.oldest

    async def _step(self) -> tuple[float, bool]:
        """Do what is due; returns (seconds to wait, whether new items end the wait)."""
        now = self._clock()
        if now < self._retry_at:
            return self._retry_at - now, False
        await self._refresh()
        maxage = self.action.delivery.maxage
        if self.oldest is not None and self.oldest < now - maxage:
            lost = await asyncio.to_thread(self._outbox.drop_older, self.name, now - maxage)
            self.expired += lost
            log.error("notify %s: %d notification(s) older than %.0f s dropped unsent",
                      self.name, lost, maxage)
            await self._refresh()
        step = self.pacer.plan(now, self.pending, self.oldest,
                               quiet_until(self.action.context, now))
        if step.what == "wait":
            return (NEVER if step.until == NEVER else max(0.01, step.until - now)), True
        calm = now - self._last_event
        if (step.what == "send" and calm < LINGER and self.oldest is not None
                and now - self.oldest < MAX_LINGER):
            return LINGER - calm, True
        limit = MAX_DIGEST if step.what == "digest" else self.channel.batch
        rows = await asyncio.to_thread(self._outbox.pending, self.name, limit)
        items, finished, partial = _take(rows, limit)
        if not items:
            return 0.0, True
        key = f"{self.name}:{rows[0].seq}:{rows[0].done}"
        self._idle.clear()
        try:
            try:
                await self.channel.send(items, step.what == "digest", key)
            except DeliveryError as exc:
                return self._failed(now, str(exc)), False
            await asyncio.to_thread(self._outbox.advance, self.name, finished, partial)
        finally:
            self._idle.set()
        self._delivered(now, step, len(items))
        return 0.0, True

    def _failed(self, now: float, error: str) -> float:
        d = self.action.delivery
        self.failures += 1
        self.errors += 1
        self.last_error = error
        backoff = min(d.retrymax, d.retry * 2.0 ** min(self.failures - 1, 30))
        self._retry_at = now + backoff
        if self.failures == 1 or now - self._last_reminder >= REMIND:
            self._last_reminder = now
            log.error("notify %s: delivery failed (%d waiting, attempt %d, next in %.1f s): %s",
                      self.name, self.pending, self.failures, backoff, error)
        return backoff

    def _delivered(self, now: float, step: Step, count: int) -> None:
        if self.failures:
            log.warning("notify %s: delivering again after %d failed attempt(s)", self.name,
                        self.failures)
        self.failures = 0
        self._retry_at = 0.0
        self.pacer.sent(now, step)
        self.sent += count
        self.messages += 1
        if step.what == "digest":
            self.digests += 1
            log.info("notify %s: sent a digest of %d notification(s)", self.name, count)
        self.pending = max(0, self.pending - count)

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {"name": self.name, "kind": self.action.kind, "jails": sorted(self.jails),
                "pending": self.pending,
                "oldest_age": round(now - self.oldest, 1) if self.oldest is not None else 0.0,
                "sent": self.sent, "messages": self.messages, "digests": self.digests,
                "failures": self.failures, "errors": self.errors, "last_error": self.last_error,
                "retry_in": round(max(0.0, self._retry_at - now), 1) if self.failures else 0.0,
                "held": self.pacer.held, "expired": self.expired}


def _take(rows: list[OutboxRow], limit: int
          ) -> tuple[list[Notice], list[int], tuple[int, int] | None]:
    """Up to ``limit`` unsent items of ``rows`` in order; the rows they finish, and the
    (seq, done) of a row they leave partly sent."""
    items: list[Notice] = []
    finished: list[int] = []
    partial: tuple[int, int] | None = None
    for row in rows:
        room = limit - len(items)
        if room <= 0:
            break
        rest = row.items[row.done:]
        items.extend(Notice.from_row(row.kind, row.reason, row.time, r) for r in rest[:room])
        if len(rest) <= room:
            finished.append(row.seq)
        else:
            partial = (row.seq, row.done + room)
    return items, finished, partial
