"""Wires insight into the running daemon: enrichment and metrics subscribers, the jails'
batch hook, timing of firewall backends, and the node_exporter textfile.

Owns that wiring only, so ``runtime.py`` gains a few lines: ``Insight(runtime)`` at start,
``instrument`` around each backend it creates, ``watch(runner)`` when a jail starts,
``stop()`` at shutdown, and the control command ``metrics`` answered from here.
Must not decide bans or read options beyond the typed ``DaemonSettings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..events import Ban, BanEvent, BanKey
from ..insight.enrich import Enricher
from ..insight.metrics import Metrics, State
from .jailrun import JailRunner

if TYPE_CHECKING:
    from ..actions.base import Backend
    from .runtime import Runtime

log = logging.getLogger("banish.server")

TEXTFILE_EVERY = 15.0
"""Seconds between rewrites of ``metricsfile`` (node_exporter reads it when scraped)."""
TEXTFILE_DEBOUNCE = 1.0
"""A ban or unban rewrites it sooner, at most once per this many seconds."""



def live_enrichment(geoipdb: str, enrich: str) -> bool:
    """Whether the daemon enriches each ban itself: the shipped data costs ~110 MB of memory
    (measured: 39 MB -> 149 MB RSS), so by default only .mmdb files (memory-mapped) are used
    live; otherwise ``banish report``/``web`` fill origins when they run."""
    spec = geoipdb.strip().lower()
    if spec in ("off", "no", "none", "false"):
        return False
    if enrich == "auto":
        return spec not in ("", "shipped")
    return enrich == "live"

class TimedBackend:
    """A firewall backend whose ban/unban batches are timed into the metrics; every other
    attribute is the backend's own (the enforcer cannot tell the difference)."""

    def __init__(self, name: str, backend: Backend, metrics: Metrics) -> None:
        self._name = name
        self._backend = backend
        self._metrics = metrics

    async def ban(self, bans: Sequence[Ban], now: float) -> Any:
        started = time.perf_counter()
        try:
            return await self._backend.ban(bans, now)
        finally:
            self._metrics.applied(self._name, "ban", time.perf_counter() - started)

    async def unban(self, keys: Sequence[BanKey]) -> Any:
        started = time.perf_counter()
        try:
            return await self._backend.unban(keys)
        finally:
            self._metrics.applied(self._name, "unban", time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class Insight:
    """Enrichment and metrics of one daemon run."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.metrics = Metrics(self._state)
        self._changed = asyncio.Event()
        runtime.stream.subscribe("metrics", self._handle)
        self.enricher: Enricher | None = None
        if live_enrichment(settings.geoipdb, settings.enrich) \
                and settings.dbfile != ":memory:":
            self.enricher = Enricher(settings.dbfile, settings.geoipdb,
                                     reversedns=settings.reversedns, clock=runtime.clock)
            self.enricher.subscribe(runtime.stream)
        self.metricsfile = settings.metricsfile
        self._writer: asyncio.Task[None] | None = None
        if self.metricsfile:
            self._writer = asyncio.create_task(self._write_loop(), name="metricsfile")

    async def _handle(self, event: BanEvent) -> None:
        await self.metrics.handle(event)
        self._changed.set()

    def instrument(self, name: str, backend: Backend) -> Backend:
        return TimedBackend(name, backend, self.metrics)

    def watch(self, runner: JailRunner) -> None:
        runner.on_batch = self._batch

    def _batch(self, runner: JailRunner, lines: int, seconds: float) -> None:
        self.metrics.batch(runner.name, lines, seconds,
                           runner.pipeline.core.stats().total_failed)

    def _state(self) -> State:
        rt = self.runtime
        enforcer = rt.enforcer
        active: dict[str, int] = {name: 0 for name in rt.runners}
        backlog = failed = 0
        if enforcer is not None:
            # One pass over the bans (a list per jail was jails x bans: 9 million steps on
            # every scrape with 91 jails and 100,000 bans).
            for jail, count in Counter(b.jail for b in enforcer.active).items():
                if jail in active:
                    active[jail] = count
            backlog, failed = len(enforcer.unsaved), len(enforcer.failed)
        errors = {name: sum(1 for s in r.statuses.values() if s.state != "ok")
                  for name, r in rt.runners.items()}
        fleet = rt.fleet.metrics() if rt.fleet is not None else None
        return State(active, tuple(rt.stream.status()), errors, backlog, failed, fleet)

    def text(self) -> str:
        return self.metrics.text()

    def _write_textfile(self) -> None:
        try:
            self.metrics.write_textfile(self.metricsfile)
        except OSError as exc:
            log.warning("cannot write metricsfile %s: %s", self.metricsfile, exc)

    async def _write_loop(self) -> None:
        """Every TEXTFILE_EVERY seconds, and within a second of a ban or unban."""
        while True:
            self._changed.clear()
            self._write_textfile()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), TEXTFILE_EVERY)
            await asyncio.sleep(TEXTFILE_DEBOUNCE)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
            self._write_textfile()
        if self.enricher is not None:
            await self.enricher.close()
