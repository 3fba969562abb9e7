"""``banish regex``: test a filter against a log file or a single line (fail2ban-regex's role).

Owns reading the input in large chunks, telling a filter name (a mistyped one is an error)
from a bare failregex, and reporting; the verdicts come from ``match/`` — the very code the
daemon runs. ``--json`` prints one object per input line, in order, and nothing
else on stdout: ``{"line", "match", "host", "time"}``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time as _time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from ..errors import ConfigError
from ..paths import packaged_config_dir
from .logfile import chunks_with_candidates

if TYPE_CHECKING:
    # Imported where used: every `banish` command builds this verb's parser, and the matcher
    # is a third of the start-up time of `banish status`.
    from ..config.filterdef import FilterDefinition
    from ..match.chunks import ChunkMatcher, LineOutcome
    from ..match.filter import CompiledFilter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", metavar="LOG", help="log file, or one literal log line")
    p.add_argument("filter", metavar="FILTER",
                   help="filter name in DIR/filter.d, a filter file, or a bare failregex")
    p.add_argument("--config", metavar="DIR", help="config directory (default: banish's own)")
    p.add_argument("--opt", metavar="KEY=VALUE", action="append", default=[],
                   help="filter option, e.g. mode=aggressive or logtype=journal (repeatable)")
    p.add_argument("--now", metavar="EPOCH", type=float,
                   help="the current time (year inference, journal-style stamping)")
    p.add_argument("--json", action="store_true", help="one JSON object per input line")
    p.add_argument("--print-all-missed", action="store_true", help="print every missed line")
    p.add_argument("--print-all-matched", action="store_true", help="print every matched line")
    p.add_argument("--no-prefilter", action="store_true", help=argparse.SUPPRESS)


def parse_opts(items: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--opt {item!r}: expected KEY=VALUE")
        opts[key.strip().lower()] = value
    return opts


_LOOKS_LIKE_NAME = re.compile(r"[\w.-]+(?:\[[^\]]*=[^\]]*\])?")
"""What a filter name looks like (``sshd``, ``sshd[mode=aggressive]``). No useful failregex
looks like this: it would have no host group."""


def _no_filter_named(name: str, directory: str) -> str:
    """The error for a filter name that is not in ``directory``, with the likely intended."""
    try:
        names = sorted({os.path.splitext(f)[0] for f in os.listdir(directory)
                        if f.endswith((".conf", ".local"))})
    except OSError:
        names = []
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        hint = f"closest: {', '.join(close)}"
    elif names:
        hint = f"filters: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
    else:
        hint = "no filters there"
    return f"no filter named {name!r} in {directory} ({hint})"


def resolve_filter(spec: str, config_dir: str, opts: dict[str, str]) -> FilterDefinition:
    """A filter name, a filter file, or — when it is neither — a bare failregex."""
    from ..config.filterdef import FILTER_OPTIONS, FilterDefinition, load_filter
    name = spec.split("[", 1)[0].strip()
    is_file = os.path.isfile(spec)
    is_named = bool(name) and all(c.isalnum() or c in "-_." for c in name) and (
        os.path.isfile(os.path.join(config_dir, "filter.d", name + ".conf"))
        or os.path.isfile(os.path.join(config_dir, "filter.d", name + ".local")))
    if is_file or is_named:
        return load_filter(config_dir, spec, opts)
    if "<" not in spec and "(?P<" not in spec and os.sep in spec:
        raise ConfigError(f"no such filter file {spec!r}")
    if _LOOKS_LIKE_NAME.fullmatch(spec.strip()):
        # A typo of a filter name would otherwise become a regex without a host group.
        raise ConfigError(_no_filter_named(name, os.path.join(config_dir, "filter.d")))
    return FilterDefinition(
        name="(command line)", file="", failregex=(spec,),
        ignoreregex=tuple(v for v in opts.get("ignoreregex", "").split("\n") if v),
        prefregex=opts.get("prefregex") or None,
        maxlines=int(opts.get("maxlines", "1") or 1),
        datepattern=opts.get("datepattern") or None,
        usedns=opts.get("usedns", "yes"),
        logtype=opts.get("logtype", "file"),
        options={k: v for k, v in opts.items() if k in FILTER_OPTIONS},
    )


@dataclass
class Tally:
    lines: int = 0
    matched: int = 0
    ignored: int = 0
    forged: int = 0
    per_regex: Counter[int] = field(default_factory=Counter)
    missed_lines: list[str] = field(default_factory=list)
    matched_lines: list[str] = field(default_factory=list)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def _emit_json(out: TextIO, outcomes: Iterator[LineOutcome], total: Iterator[int]) -> None:
    """Print one object per line; lines the prefilter skipped are misses."""
    write = out.write
    miss = ', "match": false, "host": null, "time": null}\n'
    next_line = 0
    for outcome in outcomes:
        while next_line < outcome.index:
            next_line += 1
            write('{"line": ' + str(next_line) + miss)
        hit = outcome.result.failure
        next_line += 1
        if hit is None:
            write('{"line": ' + str(next_line) + miss)
        else:
            write(json.dumps({"line": next_line, "match": True, "host": hit.fid,
                              "time": _iso(hit.time)}) + "\n")
    end = next(total)
    while next_line < end:
        next_line += 1
        write('{"line": ' + str(next_line) + miss)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ..match.chunks import ChunkMatcher
    from ..match.filter import CompiledFilter

    out = out or sys.stdout
    opts = parse_opts(args.opt)
    config_dir = args.config or packaged_config_dir()
    definition = resolve_filter(args.filter, config_dir, opts)
    flt = CompiledFilter(definition, logtimezone=opts.get("logtimezone"))
    matcher = ChunkMatcher(flt, use_prefilter=not args.no_prefilter)
    now = args.now if args.now is not None else _time.time()
    is_file = os.path.isfile(args.log)
    if not is_file and (os.sep in args.log and "\n" not in args.log and os.path.exists(
            os.path.dirname(args.log) or ".") and len(args.log.split()) == 1):
        raise ConfigError(f"no such log file {args.log!r}")
    chunks = chunks_with_candidates(args.log, matcher.prescanner) if is_file else iter(
        [(args.log.encode("utf-8"), None)])

    def outcomes() -> Iterator[LineOutcome]:
        for chunk, found in chunks:
            yield from matcher.feed(chunk, now, found)

    started = _time.perf_counter()
    if args.json:
        _emit_json(out, outcomes(), iter(lambda: matcher.lines_seen, None))
        return 0
    tally = Tally()
    keep_missed = args.print_all_missed
    seen_matched: set[int] = set()
    for outcome in outcomes():
        result = outcome.result
        for h in result.hits:
            tally.per_regex[h.regex_index] += 1
        # Counted as fail2ban-regex counts: a NOFAIL hit makes the line "ignored"; any other
        # hit, even one still waiting for its address (multi-line), makes it "matched".
        if result.forged:
            tally.forged += 1
        if result.ignored or any(h.nofail for h in result.hits):
            tally.ignored += 1
        elif result.hits:
            tally.matched += 1
            if keep_missed:
                seen_matched.add(outcome.index)
            if args.print_all_matched:
                tally.matched_lines.append(outcome.text)
    tally.lines = matcher.lines_seen
    if keep_missed:
        tally.missed_lines = _missed_lines(args.log, is_file, seen_matched)
    _report(out, definition, flt, matcher, tally, _time.perf_counter() - started)
    return 0


def _missed_lines(log: str, is_file: bool, matched: set[int]) -> list[str]:
    if not is_file:
        return [] if 0 in matched else [log]
    with open(log, "rb") as fh:
        return [raw.rstrip(b"\r\n").decode("utf-8", "replace")
                for i, raw in enumerate(fh) if i not in matched]


def _report(out: TextIO, definition: FilterDefinition, flt: CompiledFilter,
            matcher: ChunkMatcher, tally: Tally, seconds: float) -> None:
    w = out.write
    w(f"Filter: {definition.name} ({definition.file or 'command line'})\n")
    w(f"Prefilter: {matcher.prefilter.engine if matcher.prefilter else 'off'}\n\n")
    w(f"Failregex: {sum(tally.per_regex.values())} total\n")
    for i, compiled in enumerate(flt.failregex):
        hits = tally.per_regex.get(i, 0)
        if hits:
            w(f"|  {i + 1:>3}) [{hits}] {compiled.source}\n")
    w(f"\nIgnoreregex: {tally.ignored} total\n")
    if tally.forged:
        w(f"|  [{tally.forged}] forged: a client-written copy of the server's address field "
          "(not read; see banish.match.forgery)\n")
    templates = flt.dates.templates_used() if hasattr(flt.dates, "templates_used") else []
    if templates:
        w("\nDate template hits:\n")
        for name, count in templates:
            w(f"|  [{count}] {name}\n")
    missed = tally.lines - tally.matched - tally.ignored
    w(f"\nLines: {tally.lines} lines, {tally.ignored} ignored, {tally.matched} matched, "
      f"{missed} missed\n")
    rate = tally.lines / seconds if seconds > 0 else 0.0
    w(f"[processed in {seconds:.2f} s, {rate:,.0f} lines/s]\n")
    if tally.matched_lines:
        w("\n|- Matched line(s):\n")
        for line in tally.matched_lines:
            w(f"|  {line}\n")
    if tally.missed_lines:
        w("\n|- Missed line(s):\n")
        for line in tally.missed_lines:
            w(f"|  {line}\n")


__all__ = ["add_arguments", "run"]
