"""banish.conf's insight options: geoipdb, reversedns, metricsfile; and report's times."""

from __future__ import annotations

from pathlib import Path

import pytest

from banish.cli.report import parse_when
from banish.config.loader import load_daemon_settings
from banish.errors import ConfigError


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "banish.conf").write_text("[Definition]\n" + body)
    return tmp_path


def test_defaults_enrich_with_the_shipped_data(tmp_path: Path) -> None:
    s = load_daemon_settings(str(write(tmp_path, "")))
    assert (s.geoipdb, s.reversedns, s.metricsfile) == ("shipped", False, "")


def test_options_are_read(tmp_path: Path) -> None:
    s = load_daemon_settings(str(write(tmp_path, "geoipdb = /a.mmdb /b.mmdb\nreversedns = yes\n"
                                                 "metricsfile = /run/banish.prom\n")))
    assert (s.geoipdb, s.reversedns, s.metricsfile) == ("/a.mmdb /b.mmdb", True,
                                                        "/run/banish.prom")


def test_a_bad_boolean_names_its_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_daemon_settings(str(write(tmp_path, "reversedns = perhaps\n")))
    assert "reversedns" in str(e.value) and "banish.conf" in str(e.value)


@pytest.mark.parametrize(("geoipdb", "enrich", "live"), [
    ("shipped", "auto", False),   # ~110 MB in the daemon: report/web fill origins instead
    ("/a.mmdb", "auto", True),    # memory-mapped: cheap enough to look up each ban
    ("shipped", "live", True),
    ("/a.mmdb", "later", False),
    ("off", "live", False),
])
def test_when_the_daemon_enriches(tmp_path: Path, geoipdb: str, enrich: str,
                                  live: bool) -> None:
    from banish.daemon.insight import live_enrichment

    s = load_daemon_settings(str(write(tmp_path, f"geoipdb = {geoipdb}\nenrich = {enrich}\n")))
    assert live_enrichment(s.geoipdb, s.enrich) is live


def test_a_bad_enrich_mode_names_its_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_daemon_settings(str(write(tmp_path, "enrich = sometimes\n")))
    assert "enrich" in str(e.value) and "banish.conf" in str(e.value)


def test_report_times() -> None:
    now = 1_764_547_200.0
    assert parse_when("30d", now, "--since") == now - 30 * 86400
    assert parse_when("3600", now, "--since") == now - 3600
    assert parse_when("1761955200", now, "--since") == 1761955200.0
    assert parse_when("2025-11-01T00:00:00+00:00", now, "--since") == 1761955200.0
    with pytest.raises(ConfigError):
        parse_when("last tuesday", now, "--since")
