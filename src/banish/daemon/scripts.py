"""fail2ban's action.d scripts as the first subscriber of the ban event stream.

Owns translating ban events into the script runner's calls (``actionban`` for bans, restored
bans with ``restored=1``, ``actionunban`` for unbans and expiries, a restart of changed actions
on reload) for the jails that have scripts, and catching up from the enforcer's active bans
(`CommandActions.reconcile`) after a failed script or an overflowing queue. fail2ban runs all
its actions this way too: after the ban is recorded, beside the rest of the daemon. Must not
decide bans, read configuration files or block the enforcer (it runs in its own task).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..actions.base import BackendError
from ..actions.command import CommandActions
from ..config.actiondef import ActionDefinition
from ..events import Ban, BanEvent, EventKind
from .stream import EventStream, Subscription

log = logging.getLogger("banish.actions")

SUBSCRIBER = "action.d"


class ScriptSubscriber:
    """Runs each jail's action.d scripts for the events of that jail."""

    def __init__(self, runner: CommandActions, active: Callable[[], Iterable[Ban]],
                 clock: Callable[[], float]) -> None:
        self.runner = runner
        self._active = active
        self._clock = clock
        self._jails: frozenset[str] = frozenset()
        self._started: frozenset[str] | None = None
        self.subscription: Subscription | None = None

    def subscribe(self, stream: EventStream) -> Subscription:
        self.subscription = stream.subscribe(SUBSCRIBER, self.handle, resync=self.resync)
        return self.subscription

    def configure(self, definitions: Mapping[str, Sequence[ActionDefinition]]) -> None:
        """The scripts of every jail that has some; applied at the next RELOAD event (the
        runtime publishes one after start and after each reload)."""
        self.runner.configure({j: tuple(d) for j, d in definitions.items() if d})
        self._jails = frozenset(j for j, d in definitions.items() if d)

    @property
    def jails(self) -> frozenset[str]:
        return self._jails

    async def handle(self, event: BanEvent) -> None:
        if event.kind is EventKind.RELOAD:
            await self._start()
            return
        if self._started is None:
            await self._start()
        bans = [b for b in event.bans if b.jail in self._jails]
        if not bans:
            return
        try:
            if event.kind is EventKind.BAN:
                await self.runner.ban(bans, event.time)
            elif event.kind is EventKind.RESTORE:
                await self.runner.ban(bans, event.time, restored=True)
            else:  # UNBAN, EXPIRE
                await self.runner.unban(bans)
        except BackendError as exc:
            # The runner names what failed; catching up re-checks and retries the rest.
            log.error("action.d: %s", exc)
            if self.subscription is not None:
                self.subscription.request_resync()

    async def _start(self) -> None:
        self._started = self._jails
        try:
            await self.runner.start(sorted(self._jails))
        except BackendError as exc:
            log.error("action.d: starting actions failed (retried): %s", exc)
            if self.subscription is not None:
                self.subscription.request_resync()

    async def resync(self) -> None:
        """Make the scripts' record equal to the active bans (bans missed or failed)."""
        if self._started != self._jails:
            await self._start()
        active = [b for b in self._active() if b.jail in self._jails]
        try:
            await self.runner.reconcile(active, self._clock())
        except BackendError as exc:
            log.error("action.d: catching up failed (retried at the next reconcile): %s", exc)

    async def stop(self) -> None:
        try:
            await self.runner.stop()
        except BackendError as exc:
            log.error("action.d: stopping actions failed: %s", exc)
