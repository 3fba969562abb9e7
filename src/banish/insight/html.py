"""The report as one self-contained HTML file: inline CSS, charts and a world map as inline
SVG drawn here, no script, no font, no image, no link to anything.

Why SVG written by Python and no JavaScript: the file is read offline, mailed, opened in a
mail client that runs no scripts; it must look the same everywhere and can never fetch
anything (a Content-Security-Policy of ``default-src 'none'`` says so to the browser too).
The dashboard (``web/``) draws the same charts from the same functions.

Owns the page's look. Every text that came from a log or a database (addresses, AS names,
user names, jail names) is escaped here. Must not query the database.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from typing import Any

from .countries import COUNTRIES

CSP = "default-src 'none'; style-src 'unsafe-inline'"
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}tr:nth-child(even){background:#f4f6f8}
.totals{display:flex;flex-wrap:wrap;gap:1em}.totals div{background:#f4f6f8;padding:.6em 1em;
border-radius:6px}.totals b{display:block;font-size:1.4em}
svg.chart{display:block;margin:.5em 0;max-width:100%;height:auto}
svg .bar{fill:#3b6ea8}svg .bar2{fill:#c0504d}svg text{font-size:11px;fill:#333}
svg .grid{stroke:#ddd;stroke-width:1;fill:none}svg .land{fill:#eef1f4}
svg .dot{fill:#c0504d;fill-opacity:.6;stroke:#8b2e2b}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:2em}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(t: float | None, utc: bool) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t) if utc else time.localtime(t))


def columns(name: str, labels: Sequence[str], values: Sequence[int], *, width: int = 720,
            height: int = 200, every: int = 1) -> str:
    """Vertical bars (by day, by hour of day), a label under every ``every``-th bar."""
    n = max(1, len(values))
    most = max(values, default=0) or 1
    left, bottom, top = 50, 30, 10
    step = (width - left) / n
    parts = [f'<svg class="chart" data-chart="{esc(name)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{esc(name)}">']
    for tick in sorted({0, most // 2, most}):
        y = top + (height - bottom - top) * (1 - tick / most)
        parts.append(f'<line class="grid" x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>')
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        h = (height - bottom - top) * v / most
        x = left + i * step
        parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{height - bottom - h:.1f}" '
                     f'width="{max(1.0, step - 2):.1f}" height="{h:.1f}">'
                     f'<title>{esc(label)}: {v:,}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" '
                         f'text-anchor="middle">{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars(name: str, rows: Sequence[tuple[str, int]], *, width: int = 520) -> str:
    """Horizontal bars with their labels (by jail, node, country, AS)."""
    most = max((v for _, v in rows), default=0) or 1
    label_w, row_h = 170, 20
    height = max(1, len(rows)) * row_h + 6
    parts = [f'<svg class="chart" data-chart="{esc(name)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{esc(name)}">']
    for i, (label, v) in enumerate(rows):
        y = 3 + i * row_h
        w = (width - label_w - 70) * v / most
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{esc(short)}'
                     f'</text><rect class="bar" x="{label_w}" y="{y + 2}" width="{w:.1f}" '
                     f'height="{row_h - 5}"><title>{esc(label)}: {v:,}</title></rect>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{v:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def world(rows: Sequence[dict[str, Any]], *, width: int = 720) -> str:
    """Bans per country as bubbles on an equirectangular grid (no borders: nothing to
    download), the ten biggest labelled."""
    height = width // 2
    most = max((r["bans"] for r in rows if r["key"] in COUNTRIES), default=0) or 1

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return (lon + 180) / 360 * width, (90 - lat) / 180 * height

    parts = [f'<svg class="chart" data-chart="world" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="bans by country">',
             f'<rect class="land" x="0" y="0" width="{width}" height="{height}"/>']
    for meridian in range(-180, 181, 30):
        x, _ = xy(0, meridian)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}"/>')
    for parallel in range(-60, 61, 30):
        _, y = xy(parallel, 0)
        parts.append(f'<line class="grid" x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}"/>')
    placed = [r for r in rows if r["key"] in COUNTRIES]
    for rank, r in enumerate(sorted(placed, key=lambda r: -r["bans"])):
        name, lat, lon = COUNTRIES[r["key"]]
        x, y = xy(lat, lon)
        radius = 2 + 22 * math.sqrt(r["bans"] / most)
        parts.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}">'
                     f'<title>{esc(name)} ({esc(r["key"])}): {r["bans"]:,} bans, '
                     f'{r["addresses"]:,} addresses</title></circle>')
        if rank < 10:
            parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">'
                         f'{esc(r["key"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rows_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def charts(report: dict[str, Any]) -> dict[str, str]:
    """Every chart of a report by name (the HTML file and the dashboard show these)."""
    days = report["by_day"]
    return {
        "by_day": columns("by_day", [d["day"][5:] for d in days], [d["bans"] for d in days],
                          every=max(1, len(days) // 10)),
        "by_hour": columns("by_hour", [f"{h['hour']:02d}" for h in report["by_hour"]],
                           [h["bans"] for h in report["by_hour"]], every=2),
        "by_jail": bars("by_jail", [(r["key"], r["bans"]) for r in report["by_jail"]]),
        "by_node": bars("by_node", [(r["key"], r["bans"]) for r in report["by_node"]]),
        "by_country": bars("by_country", [(f"{r['key']} {r['name']}" if r["name"] != r["key"]
                                           else r["key"], r["bans"])
                                          for r in report["by_country"][:15]]),
        "by_asn": bars("by_asn", [(f"{r['key']} {r['as_org']}" if r["asn"] is not None
                                   else r["as_org"], r["bans"]) for r in report["by_asn"][:15]]),
        "world": world(report["by_country"]),
    }


def page(report: dict[str, Any], title: str = "banish report") -> str:
    utc = report["period"]["utc"]
    t = report["totals"]
    c = charts(report)
    period = (f"{_when(report['period']['since'], utc)} to "
              f"{_when(report['period']['until'], utc)}{' UTC' if utc else ''}")
    totals = "".join(f"<div><b>{esc(v)}</b>{esc(k)}</div>" for k, v in (
        ("bans", f"{t['bans']:,}"), ("failures", f"{t['failures']:,}"),
        ("addresses", f"{t['addresses']:,}"), ("countries", t["countries"]),
        ("repeat offenders", f"{t['repeat_offenders']:,}"),
        ("failures per ban", t["failures_per_ban"]),
        ("first seen", _when(t["first_seen"], utc)), ("last seen", _when(t["last_seen"], utc))))
    offenders = _rows_table(
        ("address", "bans", "failures", "country", "AS", "first seen", "last seen"),
        [(r["address"], r["bans"], r["failures"], r["country"] or "-",
          r["as_org"] or "-", _when(r["first_seen"], utc), _when(r["last_seen"], utc))
         for r in report["top_offenders"]])
    repeat = _rows_table(("address", "bans", "country", "first seen", "last seen"),
                         [(r["address"], r["bans"], r["country"] or "-",
                           _when(r["first_seen"], utc), _when(r["last_seen"], utc))
                          for r in report["repeat_offenders"]])
    users = _rows_table(("user name", "bans"), [(u["user"], u["bans"]) for u in report["users"]])
    services = _rows_table(("jail (service)", "bans", "failures", "failures per ban",
                            "first seen", "last seen"),
                           [(r["key"], r["bans"], r["failures"], r["failures_per_ban"],
                             _when(r["first_seen"], utc), _when(r["last_seen"], utc))
                            for r in report["by_jail"]])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{esc(title)}</title><style>{STYLE}</style></head><body>
<h1>{esc(title)}</h1><p>{esc(period)}</p>
<section class="totals">{totals}</section>
<h2>Where they come from</h2>{c["world"]}
<div class="grid2"><div><h2>By country</h2>{c["by_country"]}</div>
<div><h2>By AS</h2>{c["by_asn"]}</div></div>
<h2>By day</h2>{c["by_day"]}
<h2>By hour of day</h2>{c["by_hour"]}
<div class="grid2"><div><h2>By jail</h2>{c["by_jail"]}</div>
<div><h2>By node</h2>{c["by_node"]}</div></div>
<h2>Services</h2>{services}
<h2>Top offenders</h2>{offenders}
<h2>Repeat offenders (banned again after release)</h2>{repeat}
<h2>User names tried</h2>{users}
<p><small>Generated by banish at {esc(_when(report["generated_at"], utc))}.</small></p>
</body></html>
"""
