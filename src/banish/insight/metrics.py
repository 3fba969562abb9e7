"""Prometheus metrics of the daemon: counters, gauges and histograms in the text format.

Owns the metric names (Prometheus conventions: ``banish_`` prefix, base units, ``_total`` on
counters, ``_seconds`` on durations) and their exposition: ``text()`` for the control
command ``metrics`` (which ``banish web`` serves on ``/metrics``) and ``write_textfile`` for
node_exporter's textfile collector (``metricsfile =``; written atomically, a temporary file
renamed over the old one, so the collector never reads half a file).

Counters move from events: bans and unbans from the ban event stream (``handle`` is a
subscriber), lines read, failures and match time from each jail's batch hook. Gauges are read
when scraped from a ``State`` snapshot the daemon supplies (active bans, queues, lag, source
errors), so nothing is kept twice. A registry of our own, never prometheus_client's global
one: two daemons in one test process must not share counters.

Must not decide anything or do I/O beyond writing the textfile.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from ..events import BanEvent, EventKind

MATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class State:
    """What the gauges show, read from the daemon at scrape time."""

    active: Mapping[str, int] = field(default_factory=dict)
    """Active bans per jail."""
    subscribers: tuple[Mapping[str, object], ...] = ()
    """``EventStream.status()``: name, queued, lag, dropped, errors..."""
    source_errors: Mapping[str, int] = field(default_factory=dict)
    """Sources (files, journal) per jail not being read right now."""
    store_backlog: int = 0
    """Bans the store could not take yet (they are enforced; the disk is behind)."""
    failed_bans: int = 0
    """Bans a firewall refused, waiting for their retry."""
    fleet: Mapping[str, float] | None = None
    """With a fleet: ``connected`` (0/1), ``queued`` (bans and unbans waiting to be sent),
    ``unread`` (the fleet's events this node has yet to read), ``refused`` (rows refused)."""


class _StateCollector:
    def __init__(self, state: Callable[[], State]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        s = self._state()
        active = GaugeMetricFamily("banish_active_bans", "Bans in force now.", labels=["jail"])
        for jail, n in sorted(s.active.items()):
            active.add_metric([jail], n)
        yield active
        queued = GaugeMetricFamily("banish_subscriber_queue_length",
                                   "Events waiting in a ban event stream subscriber's queue.",
                                   labels=["subscriber"])
        lag = GaugeMetricFamily("banish_subscriber_lag_seconds",
                                "Age of the oldest event a subscriber has not finished.",
                                labels=["subscriber"])
        dropped = CounterMetricFamily("banish_subscriber_dropped_events",
                                      "Events a subscriber lost to a full queue.",
                                      labels=["subscriber"])
        errors = CounterMetricFamily("banish_subscriber_errors",
                                     "Events a subscriber failed to handle.",
                                     labels=["subscriber"])
        for sub in s.subscribers:
            name = [str(sub.get("name", ""))]
            queued.add_metric(name, _number(sub.get("queued")))
            lag.add_metric(name, _number(sub.get("lag")))
            dropped.add_metric(name, _number(sub.get("dropped")))
            errors.add_metric(name, _number(sub.get("errors")))
        yield queued
        yield lag
        yield dropped
        yield errors
        sources = GaugeMetricFamily("banish_source_errors",
                                    "Log sources of a jail that cannot be read now.",
                                    labels=["jail"])
        for jail, n in sorted(s.source_errors.items()):
            sources.add_metric([jail], n)
        yield sources
        yield GaugeMetricFamily("banish_store_backlog_bans",
                                "Enforced bans the ban database has not taken yet.",
                                value=s.store_backlog)
        yield GaugeMetricFamily("banish_firewall_failed_bans",
                                "Bans a firewall backend refused, waiting to be retried.",
                                value=s.failed_bans)
        if s.fleet is not None:
            f = s.fleet
            yield GaugeMetricFamily("banish_fleet_connected",
                                    "1 when the fleet's database answers.",
                                    value=f.get("connected", 0))
            yield GaugeMetricFamily("banish_fleet_outbox_bans",
                                    "Own bans and unbans waiting to be sent to the fleet.",
                                    value=f.get("queued", 0))
            yield GaugeMetricFamily("banish_fleet_unread_events",
                                    "Fleet events this node has not read yet (its lag).",
                                    value=f.get("unread", 0))
            yield CounterMetricFamily("banish_fleet_refused_addresses",
                                      "Addresses from the fleet refused as invalid.",
                                      value=f.get("refused", 0))


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


class Metrics:
    """The daemon's metrics; ``handle`` is its event stream subscriber."""

    def __init__(self, state: Callable[[], State] = State) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.lines = Counter("banish_lines_read", "Log lines read.", ["jail"], registry=r)
        self.failures = Counter("banish_failures", "Failures counted (matched, not ignored).",
                                ["jail"], registry=r)
        self.bans = Counter("banish_bans", "Bans applied (restores at start not counted).",
                            ["jail"], registry=r)
        self.unbans = Counter("banish_unbans", "Bans lifted, by why: expire or unban (by hand, "
                              "reload, jail removed).", ["jail", "kind"], registry=r)
        self.match_seconds = Histogram(
            "banish_match_duration_seconds", "Time to match one batch of log lines.",
            ["jail"], buckets=MATCH_BUCKETS, registry=r)
        self.apply_seconds = Histogram(
            "banish_firewall_apply_duration_seconds",
            "Time for a firewall backend to apply one batch of bans or unbans.",
            ["backend", "operation"], buckets=APPLY_BUCKETS, registry=r)
        r.register(_StateCollector(state))
        self._failed_seen: dict[str, int] = {}

    async def handle(self, event: BanEvent) -> None:
        if event.kind is EventKind.BAN:
            counts: dict[str, int] = {}
            for ban in event.bans:
                counts[ban.jail] = counts.get(ban.jail, 0) + 1
            for jail, n in counts.items():
                self.bans.labels(jail).inc(n)
        elif event.kind in (EventKind.UNBAN, EventKind.EXPIRE):
            counts = {}
            for ban in event.bans:
                counts[ban.jail] = counts.get(ban.jail, 0) + 1
            for jail, n in counts.items():
                self.unbans.labels(jail, event.kind.value).inc(n)

    def batch(self, jail: str, lines: int, seconds: float, total_failed: int) -> None:
        """One batch of a jail: ``total_failed`` is the jail's own running count (it starts
        over when a reload restarts the jail; the counter here only ever grows)."""
        self.lines.labels(jail).inc(lines)
        self.match_seconds.labels(jail).observe(seconds)
        before = self._failed_seen.get(jail, 0)
        grown = total_failed - before if total_failed >= before else total_failed
        if grown:
            self.failures.labels(jail).inc(grown)
        self._failed_seen[jail] = total_failed

    def applied(self, backend: str, operation: str, seconds: float) -> None:
        self.apply_seconds.labels(backend, operation).observe(seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode("utf-8")

    def write_textfile(self, path: str) -> None:
        """Atomically replace ``path`` (same directory, then rename), mode 0644."""
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".banish-metrics.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.text())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
