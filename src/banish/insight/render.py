"""The report as text: ``table`` for a terminal (aligned, within 80 columns), ``json`` and
``csv`` for scripts. (``html.py`` draws the HTML page.)

Owns formatting only: every number comes from ``report.build`` unchanged, so json shows
exactly what the other formats show. csv is one table of ``section,key,bans,failures,...``
rows: one shape a spreadsheet or ``awk`` can filter by section.
Must not query the database.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from typing import Any

WIDTH = 80


def _when(t: float | None, utc: bool) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t) if utc else time.localtime(t))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
           widths: Sequence[int], align: str = "") -> list[str]:
    """Columns aligned by ``align`` ("l"/"r" each; default: first left, the rest right),
    each cell cut to its width."""
    out = ["", title, "-" * min(WIDTH, len(title))]
    if not rows:
        return [*out, "(none)"]
    align = align or "l" + "r" * (len(widths) - 1)

    def line(cells: Sequence[Any]) -> str:
        parts = []
        for cell, w, a in zip(cells, widths, align, strict=True):
            text = _cut(str(cell), w)
            parts.append(text.ljust(w) if a == "l" else text.rjust(w))
        return "  ".join(parts).rstrip()

    return [*out, line(header), *(line(r) for r in rows)]


def _bar(n: int, most: int, width: int = 30) -> str:
    return "#" * max(1 if n else 0, round(width * n / most)) if most else ""


def table(report: dict[str, Any]) -> str:
    utc = report["period"]["utc"]
    t = report["totals"]
    out = [f"banish report: {_when(report['period']['since'], utc)} to "
           f"{_when(report['period']['until'], utc)}{' UTC' if utc else ''}"]
    filters = report["filters"]
    if filters["jails"] or filters["nodes"]:
        out.append("only: " + ", ".join(
            [f"jail {j}" for j in filters["jails"]] + [f"node {n}" for n in filters["nodes"]]))
    out += ["",
            f"bans {t['bans']:,}   failures {t['failures']:,}   addresses {t['addresses']:,}   "
            f"countries {t['countries']}",
            f"repeat offenders {t['repeat_offenders']:,}   failures per ban "
            f"{t['failures_per_ban']}",
            f"first seen {_when(t['first_seen'], utc)}   last seen {_when(t['last_seen'], utc)}"]
    out += _table("By jail (service)", ("jail", "bans", "failures", "per ban"),
                  [(r["key"], r["bans"], r["failures"], r["failures_per_ban"])
                   for r in report["by_jail"]], (30, 10, 12, 8))
    out += _table("By node", ("node", "bans", "failures", "per ban"),
                  [(r["key"], r["bans"], r["failures"], r["failures_per_ban"])
                   for r in report["by_node"]], (30, 10, 12, 8))
    out += _table("By country (top 20)", ("country", "name", "bans", "failures", "addresses"),
                  [(r["key"], r["name"], r["bans"], r["failures"], r["addresses"])
                   for r in report["by_country"][:20]], (16, 24, 9, 10, 9), "llrrr")
    out += _table("By AS (top 20)", ("AS", "organisation", "bans", "addresses"),
                  [(r["key"] if r["asn"] is not None else "-", r["as_org"], r["bans"],
                    r["addresses"]) for r in report["by_asn"]], (9, 44, 9, 9), "llrr")
    most = max((h["bans"] for h in report["by_hour"]), default=0)
    out += _table("By hour of day", ("hour", "bans", ""),
                  [(f"{h['hour']:02d}", h["bans"], _bar(h["bans"], most))
                   for h in report["by_hour"]], (4, 10, 30), "lrl")
    most = max((d["bans"] for d in report["by_day"]), default=0)
    out += _table("By day", ("day", "bans", ""),
                  [(d["day"], d["bans"], _bar(d["bans"], most)) for d in report["by_day"]],
                  (10, 10, 30), "lrl")
    out += _table("Top offenders", ("address", "bans", "failures", "cc", "AS organisation"),
                  [(r["address"], r["bans"], r["failures"], r["country"] or "-",
                    r["as_org"] or "-") for r in report["top_offenders"]], (39, 6, 8, 2, 15),
                  "lrrll")
    out += _table("Repeat offenders (banned again after release)",
                  ("address", "bans", "first seen", "last seen"),
                  [(r["address"], r["bans"], _when(r["first_seen"], utc),
                    _when(r["last_seen"], utc)) for r in report["repeat_offenders"]],
                  (36, 6, 16, 16))
    out += _table("User names tried (top 20)", ("user", "bans"),
                  [(u["user"], u["bans"]) for u in report["users"]], (40, 10))
    return "\n".join(out) + "\n"


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n"


CSV_SECTIONS = ("by_jail", "by_node", "by_country", "by_asn", "by_hour", "by_day",
                "top_offenders", "repeat_offenders", "users")


def as_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("section", "key", "bans", "failures", "detail"))
    t = report["totals"]
    for name in ("bans", "failures", "addresses", "repeat_offenders", "countries",
                 "failures_per_ban", "first_seen", "last_seen"):
        w.writerow(("totals", name, t[name] if name == "bans" else "",
                    t[name] if name == "failures" else "", t[name]))
    for section in CSV_SECTIONS:
        for row in report[section]:
            key = row.get("key", row.get("address", row.get("user", row.get("day",
                                                                              row.get("hour")))))
            detail = {k: v for k, v in row.items()
                      if k not in ("key", "address", "user", "day", "hour", "bans", "failures")}
            w.writerow((section, key, row.get("bans", ""), row.get("failures", ""),
                        json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else ""))
    return buf.getvalue()
