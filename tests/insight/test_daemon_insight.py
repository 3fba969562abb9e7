"""The real daemon: metrics parsed with prometheus_client's own parser move as it works (on
the control command behind ``/metrics`` and in the node_exporter textfile), and its bans get
their origin from the enrichment subscriber."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.daemon import Daemon, wait_for

JAILS = """
[demo]
enabled = true
filter = demo
logpath = {logs}/a.log
action = null
maxretry = 2
findtime = 1h
bantime = 1h
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_and_bans_get_origins(tmp_path: Path) -> None:
    with Daemon(tmp_path, JAILS) as d:
        textfile = tmp_path / "banish.prom"
        with open(d.cfg / "banish.conf", "a", encoding="utf-8") as fh:
            fh.write(f"metricsfile = {textfile}\ngeoipdb = shipped\nenrich = live\n")
        d.start()
        before = d.cli("metrics").stdout
        assert value(before, "banish_bans_total", jail="demo") == 0
        assert value(before, "banish_active_bans", jail="demo") == 0
        names = {f.name for f in text_string_to_metric_families(before)}
        assert {"banish_lines_read", "banish_failures", "banish_bans", "banish_unbans",
                "banish_match_duration_seconds", "banish_firewall_apply_duration_seconds",
                "banish_active_bans", "banish_subscriber_queue_length",
                "banish_subscriber_lag_seconds", "banish_source_errors",
                "banish_store_backlog_bans"} <= names

        d.fail("a.log", "9.9.9.9", 2)
        d.append("a.log", "an unrelated line")
        wait_for(lambda: "9.9.9.9" in d.bans(), what="the ban")
        d.cli("ban", "demo", "2a10:8b40::1", "191.251.128.1")

        def moved() -> str | None:
            text = d.cli("metrics").stdout
            return text if value(text, "banish_bans_total", jail="demo") == 3 else None

        text = wait_for(moved, what="bans counted")
        assert value(text, "banish_active_bans", jail="demo") == 3
        assert value(text, "banish_lines_read_total", jail="demo") >= 3
        assert value(text, "banish_failures_total", jail="demo") == 2
        assert value(text, "banish_match_duration_seconds_count", jail="demo") >= 1
        assert value(text, "banish_firewall_apply_duration_seconds_count", backend="null",
                     operation="ban") >= 2
        assert {("banish_subscriber_queue_length", (("subscriber", n),))
                for n in ("enrich", "metrics")} <= set(samples(text))

        d.cli("unban", "9.9.9.9")
        text = wait_for(lambda: (t := d.cli("metrics").stdout) and value(
            t, "banish_unbans_total", jail="demo", kind="unban") == 1 and t, what="unban")
        assert value(text, "banish_active_bans", jail="demo") == 2

        # node_exporter's textfile follows within a couple of seconds, whole each time.
        wait_for(lambda: textfile.exists() and value(
            textfile.read_text(), "banish_unbans_total", jail="demo", kind="unban") == 1,
            what="the textfile")
        assert oct(textfile.stat().st_mode & 0o777) == "0o644"

        # Enrichment, stored beside the history, off the ban path.
        def origins() -> dict[str, tuple[str, str]] | None:
            with sqlite3.connect(d.db) as conn:
                rows = {a: (c, o) for a, c, o in conn.execute(
                    "SELECT address, country, as_org FROM address_origin")}
            return rows if len(rows) == 3 else None

        rows = wait_for(origins, what="origins")
        assert rows["9.9.9.9"][0] == "US"
        assert rows["2a10:8b40::1"] == ("FR", "Coresystem Sasu")
        assert rows["191.251.128.1"] == ("BR", "TELEFONICA BRASIL S.A")
        d.stop()
