"""The daemon's notification actions: one stream subscriber and one sender per action.

Owns turning the jails' configured native actions (``JailConfig.notify``) into running
`ActionSender`s -- one per distinct action, so a ``banish-mail[...]`` written the same way in
five jails (``[DEFAULT]``) is ONE action with one outbox, one rate limit and one digest -- each
subscribed to the ban event stream as ``notify:NAME``; reload keeps an action whose settings did
not change (its pacing too), restarts a changed one on the same outbox, and stops a removed one
(its pending items stay in the store and are sent if it comes back; ``status`` counts them).
Also the channel for each kind. Must not send anything itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..config.notify import NotifyAction
from ..daemon.stream import EventStream
from ..store.notify_outbox import NotifyOutbox
from ..store.sqlite import SqliteStore
from .appriser import Apprise
from .channel import Channel, check_secret_file
from .execute import Exec
from .jsonlog import JsonLog
from .mail import Mail
from .sender import ActionSender
from .webhook import Webhook

log = logging.getLogger("banish.notify")

PREFIX = "notify:"
"""Subscriber names in the stream (and ``status``)."""
STOP_GRACE = 5.0
"""Seconds a send under way may take to finish at shutdown."""


def make_channel(action: NotifyAction) -> Channel:
    o, timeout = action.options, action.delivery.timeout
    if action.kind == "mail":
        return Mail(o, timeout)
    if action.kind == "webhook":
        return Webhook(o, timeout, action.name)
    if action.kind == "apprise":
        return Apprise(o)
    if action.kind == "jsonlog":
        return JsonLog(o)
    return Exec(o, timeout)


def group(actions: Iterable[NotifyAction]) -> dict[str, tuple[NotifyAction, frozenset[str]]]:
    """Name -> (action, its jails). Equal actions in several jails are one; two different
    ones under one name each get ``NAME@JAIL`` (their first jail)."""
    variants: dict[str, list[tuple[NotifyAction, set[str]]]] = {}
    for action in actions:
        known = variants.setdefault(action.name, [])
        for seen, jails in known:
            if seen.same_action(action):
                jails.add(action.jail)
                break
        else:
            known.append((action, {action.jail}))
    out: dict[str, tuple[NotifyAction, frozenset[str]]] = {}
    for name, found in variants.items():
        for action, jails in found:
            key = name if len(found) == 1 else f"{name}@{min(jails)}"
            out[key] = (_renamed(action, key), frozenset(jails))
    return out


def _renamed(action: NotifyAction, name: str) -> NotifyAction:
    if action.name == name:
        return action
    return NotifyAction(action.kind, name, action.jail, action.options, action.context,
                        action.delivery)


class Notifications:
    """Every running notification action; `configure` at start and at each reload."""

    def __init__(self, store: SqliteStore, clock: Callable[[], float] = time.time) -> None:
        self.outbox = NotifyOutbox(store)
        self._clock = clock
        self.senders: dict[str, ActionSender] = {}
        self._orphans: dict[str, int] = {}

    async def configure(self, stream: EventStream, actions: Iterable[NotifyAction]) -> None:
        wanted = group(actions)
        for name, sender in list(self.senders.items()):
            new = wanted.get(name)
            if new is not None and new[0].same_action(sender.action):
                sender.jails = new[1]  # the same action, maybe in other jails now
                continue
            await stream.unsubscribe(PREFIX + name)
            await sender.stop()
            del self.senders[name]
        for name, (action, jails) in wanted.items():
            if name in self.senders:
                continue
            for option in ("authfile", "secretfile"):
                problem = check_secret_file(action.options[option]) \
                    if option in action.options else None
                if problem:
                    log.warning("notify %s: %s", name, problem)
            sender = ActionSender(action, jails, make_channel(action), self.outbox, self._clock,
                                  lambda: stream.last_published)
            self.senders[name] = sender
            stream.subscribe(PREFIX + name, sender.handle)
            sender.start()
        waiting = await asyncio.to_thread(self.outbox.actions)
        self._orphans = {n: c for n, c in waiting.items() if n not in self.senders}
        for name, count in self._orphans.items():
            log.warning("notify: %d notification(s) wait for action %s, which is no longer "
                        "configured (kept; sent if it comes back)", count, name)

    def status(self) -> list[dict[str, Any]]:
        out = [s.status() for s in self.senders.values()]
        out += [{"name": n, "kind": "", "jails": [], "pending": c, "unconfigured": True}
                for n, c in self._orphans.items()]
        return out

    async def stop(self, grace: float = STOP_GRACE) -> None:
        await asyncio.gather(*(s.stop(grace) for s in self.senders.values()))
