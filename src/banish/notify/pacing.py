"""When an action sends, and whether the next message is one event or a digest. Pure.

Owns the rate limit (at most ``count`` messages in any ``period``: a sliding window of the
last sends), the digest mode (``digest=10m``: items wait until the oldest is that old, then go
out as one message), and flood and quiet-hour handling: once the limit is hit, or while quiet
hours last, items are held, and the next message allowed carries all of them as one digest.
So a 5,000-ban wave with ``rate=10/1m`` sends 10 mails in its first minute and one digest of
the other 4,990 when the window allows the next one -- never 5,000 mails.

The window lives in memory: after a restart an action may send ``count`` messages at once
again; the items themselves are durable (the outbox). Must not read the clock or do I/O.
"""

from __future__ import annotations

from collections import deque
from typing import Literal, NamedTuple

from ..config.notify import Delivery

NEVER = float("inf")


class Step(NamedTuple):
    """``send``: the next item(s) one by one; ``digest``: everything waiting in one message;
    ``wait``: nothing before ``until`` (epoch seconds; new items may change that)."""

    what: Literal["send", "digest", "wait"]
    until: float = 0.0


class Pacer:
    """One action's pace; `plan` says what to do now, `sent` records what was done."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self._sends: deque[float] = deque()
        self.held = False
        """The limit or quiet hours held items back: the next message is a digest."""

    def plan(self, now: float, pending: int, oldest: float | None,
             quiet_end: float | None = None) -> Step:
        if pending <= 0 or oldest is None:
            return Step("wait", NEVER)
        if quiet_end is not None:
            self.held = True
            return Step("wait", quiet_end)
        free_at = self._free_at(now)
        if free_at > now:
            self.held = True
            return Step("wait", free_at)
        if self.delivery.digest > 0:
            due = oldest + self.delivery.digest
            return Step("digest") if now >= due else Step("wait", due)
        if self.held and pending > 1:
            return Step("digest")
        self.held = False
        return Step("send")

    def sent(self, now: float, step: Step) -> None:
        if step.what == "digest":
            self.held = False
        self._sends.append(now)

    def _free_at(self, now: float) -> float:
        """When the window allows one more message (``now`` or earlier: at once)."""
        rate = self.delivery.rate
        if rate is None:
            return now
        count, period = rate
        while self._sends and self._sends[0] <= now - period:
            self._sends.popleft()
        if len(self._sends) < count:
            return now
        return self._sends[len(self._sends) - count] + period
