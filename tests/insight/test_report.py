"""``banish report`` over a generated month of history (three nodes, five jails, tens of
thousands of bans, IPv4 and IPv6) equals an independent recount in SQL, in every format; the
HTML opens in a real headless Chromium with every chart drawn."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banish.cli.main import main

from .browser import artifacts, browser  # noqa: F401 - the fixture
from .history import MONTH, START, generate

BANS = 40_000
SINCE, UNTIL = START, START + MONTH + 1


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "banish.sqlite3"
    generate(path, BANS)
    return path


def report(history: Path, tmp_path: Path, fmt: str, *extra: str) -> str:
    out = tmp_path / f"report.{fmt}"
    assert main(["report", "--db", str(history), "--since", str(SINCE), "--until", str(UNTIL),
                 "--utc", "--format", fmt, "-o", str(out), *extra]) == 0
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sql(history: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(history)
    yield conn
    conn.close()


def _where(jails: tuple[str, ...] = (), origins: tuple[str, ...] = ()) -> tuple[str, list[Any]]:
    clause, args = "banned_at >= ? AND banned_at < ?", [SINCE, UNTIL]
    for column, values in (("jail", jails), ("origin", origins)):
        if values:
            clause += f" AND {column} IN ({','.join('?' * len(values))})"
            args += list(values)
    return clause, args


def recount(conn: sqlite3.Connection, jails: tuple[str, ...] = (),
            origins: tuple[str, ...] = ()) -> dict[str, Any]:
    """The same figures, counted plainly and separately, straight from the tables."""
    w, a = _where(jails, origins)
    q = conn.execute
    totals = q(f"SELECT count(*), sum(failures), count(DISTINCT address), min(banned_at), "
               f"max(banned_at) FROM ban_history WHERE {w}", a).fetchone()
    repeat = q(f"""SELECT count(DISTINCT b.address) FROM ban_history b WHERE {w.replace(
                   'banned_at', 'b.banned_at').replace('jail', 'b.jail').replace(
                   'origin', 'b.origin')} AND EXISTS (SELECT 1 FROM ban_history p
                   WHERE p.address = b.address AND p.id != b.id AND {w.replace(
                   'banned_at', 'p.banned_at').replace('jail', 'p.jail').replace(
                   'origin', 'p.origin')} AND b.banned_at >= p.banned_at + p.bantime)""",
               a + a).fetchone()[0]
    return {
        "totals": totals, "repeat": repeat,
        "by_jail": {r[0]: (r[1], r[2]) for r in q(
            f"SELECT jail, count(*), sum(failures) FROM ban_history WHERE {w} GROUP BY jail",
            a)},
        "by_node": {(r[0] or "local"): (r[1], r[2]) for r in q(
            f"SELECT origin, count(*), sum(failures) FROM ban_history WHERE {w} "
            "GROUP BY origin", a)},
        "by_day": {r[0]: (r[1], r[2]) for r in q(
            f"SELECT strftime('%Y-%m-%d', banned_at, 'unixepoch'), count(*), sum(failures) "
            f"FROM ban_history WHERE {w} GROUP BY 1", a)},
        "by_hour": {int(r[0]): (r[1], r[2]) for r in q(
            f"SELECT strftime('%H', banned_at, 'unixepoch'), count(*), sum(failures) "
            f"FROM ban_history WHERE {w} GROUP BY 1", a)},
        "by_country": {(r[0] or f"({r[1]})"): (r[2], r[3], r[4]) for r in q(
            f"""SELECT o.country, o.scope, count(*), sum(h.failures), count(DISTINCT h.address)
                FROM ban_history h JOIN address_origin o ON o.address = h.address
                WHERE {w.replace('banned_at', 'h.banned_at').replace('jail', 'h.jail')
                .replace('origin', 'h.origin')} GROUP BY 1, 2""", a)},
        "top": [tuple(r) for r in q(
            f"SELECT address, count(*), sum(failures) FROM ban_history WHERE {w} "
            "GROUP BY address ORDER BY 2 DESC, 3 DESC, 1 LIMIT 20", a)],
    }


def check(rep: dict[str, Any], want: dict[str, Any]) -> None:
    t = rep["totals"]
    bans, failures, addresses, first, last = want["totals"]
    assert (t["bans"], t["failures"], t["addresses"]) == (bans, failures, addresses)
    assert (t["first_seen"], t["last_seen"]) == (first, last)
    assert t["repeat_offenders"] == want["repeat"]
    assert {r["key"]: (r["bans"], r["failures"]) for r in rep["by_jail"]} == want["by_jail"]
    assert {r["key"]: (r["bans"], r["failures"]) for r in rep["by_node"]} == want["by_node"]
    assert {d["day"]: (d["bans"], d["failures"]) for d in rep["by_day"]} == want["by_day"]
    assert {h["hour"]: (h["bans"], h["failures"]) for h in rep["by_hour"]
            if h["bans"]} == want["by_hour"]
    assert {r["key"]: (r["bans"], r["failures"], r["addresses"])
            for r in rep["by_country"]} == want["by_country"]
    assert [(r["address"], r["bans"], r["failures"]) for r in rep["top_offenders"]] == \
        want["top"]


def test_json_equals_an_independent_sql_recount(history: Path, tmp_path: Path,
                                                sql: sqlite3.Connection) -> None:
    rep = json.loads(report(history, tmp_path, "json"))
    assert rep["totals"]["bans"] == BANS
    assert {r["key"] for r in rep["by_node"]} == {"local", "web2", "mail1"}
    assert len(rep["by_jail"]) == 5
    assert any(":" in r["address"] for r in rep["top_offenders"]) or any(
        ":" in a[0] for a in sql.execute("SELECT address FROM ban_history LIMIT 1000"))
    # Every address got an origin (the report filled the history in), v4 and v6 alike.
    assert sql.execute("SELECT count(*) FROM (SELECT DISTINCT address FROM ban_history) "
                       "WHERE address NOT IN (SELECT address FROM address_origin)"
                       ).fetchone()[0] == 0
    assert sql.execute("SELECT count(*) FROM address_origin WHERE address LIKE '%:%' AND "
                       "country != ''").fetchone()[0] > 100
    assert rep["totals"]["countries"] > 50
    check(rep, recount(sql))
    want_users = sql.execute("SELECT user, count(*) FROM ban_users GROUP BY user "
                             "ORDER BY 2 DESC, 1").fetchall()
    assert [(u["user"], u["bans"]) for u in rep["users"]] == [tuple(r) for r in want_users]


def test_filters_by_jail_and_node(history: Path, tmp_path: Path,
                                  sql: sqlite3.Connection) -> None:
    rep = json.loads(report(history, tmp_path, "json", "--jail", "sshd", "--jail", "dovecot",
                            "--node", "web2", "--node", "local"))
    check(rep, recount(sql, ("sshd", "dovecot"), ("web2", "")))
    assert {r["key"] for r in rep["by_node"]} == {"local", "web2"}


def test_table_fits_80_columns_and_csv_parses(history: Path, tmp_path: Path,
                                              sql: sqlite3.Connection) -> None:
    table = report(history, tmp_path, "table")
    assert max(len(line) for line in table.splitlines()) <= 80
    assert f"bans {BANS:,}" in table
    for title in ("By jail", "By node", "By country", "By AS", "By hour of day", "By day",
                  "Top offenders", "Repeat offenders", "User names tried"):
        assert title in table
    rows = list(csv.DictReader(io.StringIO(report(history, tmp_path, "csv"))))
    jails = {r["key"]: (int(r["bans"]), int(r["failures"])) for r in rows
             if r["section"] == "by_jail"}
    assert jails == recount(sql)["by_jail"]
    assert {r["section"] for r in rows} >= {"totals", "by_country", "by_day", "by_hour",
                                           "top_offenders", "users"}


def test_html_in_headless_chromium(history: Path, tmp_path: Path,
                                   browser: Any) -> None:  # noqa: F811 - the fixture
    page_html = report(history, tmp_path, "html")
    assert "http://" not in page_html and "https://" not in page_html  # nothing to fetch
    path = tmp_path / "report.html"
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert problems == []
    assert requests == [path.as_uri()]
    charts = page.eval_on_selector_all(
        "svg.chart", "els => els.map(e => [e.dataset.chart, "
        "e.querySelectorAll('rect.bar, circle.dot').length, e.getBoundingClientRect().width])")
    drawn = {name: (marks, width) for name, marks, width in charts}
    assert set(drawn) == {"world", "by_country", "by_asn", "by_day", "by_hour", "by_jail",
                          "by_node"}
    for name, (marks, width) in drawn.items():
        assert marks > 0 and width > 100, name
    assert drawn["by_day"][0] == 30 and drawn["by_hour"][0] == 24
    assert drawn["world"][0] > 50
    page.screenshot(path=str(artifacts() / "report.png"), full_page=True)
    page.close()
