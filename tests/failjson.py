"""Read annotated sample logs (``# failJSON:`` above each line) into runnable checks.

The format is fail2ban's test format, which banish's own samples use too: ``# failJSON: {...}``
gives the expectation for the next line; ``# filterOptions: {...}`` or ``[{...}, ...]`` switches
the option sets the following lines run under; ``# fileOptions:`` gives options common to all
sets; ``# addFILE: "name"`` appends another sample file; ``test.*`` keys steer the harness
(``test.condition``, ``test.prefix-line``, ``test.filter-name``); ``constraint`` skips a line for
option sets where it is false. Each option set keeps its own filter state across the file, so
it is run as one stream of the lines it sees, in order.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

FAIL2BAN_TEST_TZ = "CET-01CEST-02,M3.5.0,M10.5.0"
FAIL2BAN_TEST_NOW = 1124013600  # 2005-08-14 12:00 CEST: the clock fail2ban's samples use


@contextmanager
def fail2ban_test_clock() -> Iterator[None]:
    """The process time zone of fail2ban's sample tests, restored afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = FAIL2BAN_TEST_TZ
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


_ANNOTATION = re.compile(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$")


@dataclass
class Check:
    file: str
    lineno: int
    line: str
    expect: dict[str, Any]


@dataclass
class OptionSet:
    """One filter configuration and the lines it must process, in order."""

    key: str
    options: dict[str, str]
    prefix_line: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def journal(self) -> bool:
        return self.options.get("logtype") == "journal"


def _safe_eval(expr: str, name: str, opts: dict[str, Any]) -> bool:
    """Evaluate a sample file's condition (``name == 'sshd'``, ``opts.get('mode') != ...``)."""
    return bool(eval(expr, {"__builtins__": {}}, {"name": name, "opts": opts}))


def read_samples(logs_dir: str, name: str) -> list[OptionSet]:
    """Parse the sample file ``logs_dir/name`` (and its addFILEs) into option sets."""
    sets: dict[str, OptionSet] = {}
    active: list[tuple[OptionSet, dict[str, Any]]] = []
    common: dict[str, Any] = {}
    files = [name]
    i = 0

    def use(opts: dict[str, Any]) -> tuple[OptionSet, dict[str, Any]]:
        flt_opts = {k: str(v) for k, v in opts.items() if not k.startswith("test.")}
        key = opts.get("test.filter-name") or (json.dumps(flt_opts, sort_keys=True)
                                                if flt_opts else "")
        key = name + key
        if key not in sets:
            sets[key] = OptionSet(key, flt_opts, str(opts.get("test.prefix-line", "")))
        return sets[key], opts

    while i < len(files):
        path = os.path.join(logs_dir, files[i])
        i += 1
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        ignore_block = False
        expect: dict[str, Any] = {}
        pending = False
        for lineno, raw in enumerate(lines, 1):
            line = raw.rstrip("\r\n")
            m = None if pending else _ANNOTATION.match(line)
            if m:
                kind, data = m.group(1), json.loads(m.group(2))
                if kind == "fileOptions":
                    common = data
                elif kind == "filterOptions":
                    active = []
                    ignore_block = False
                    for opts in data if isinstance(data, list) else [data]:
                        merged = {**common, **opts}
                        cond = merged.get("test.condition")
                        if cond:
                            ignore_block = not _safe_eval(cond, name, merged)
                        if not ignore_block:
                            active.append(use(merged))
                elif kind == "addFILE":
                    files.append(data)
                else:
                    expect, pending = data, True
                continue
            if not pending and (ignore_block or line.startswith("#") or not line.strip()):
                continue
            if not pending:
                expect = {}
            pending = False
            if ignore_block:
                continue
            if not active:
                active = [use({})]
            for opt_set, opts in active:
                constraint = expect.get("constraint")
                if constraint and not _safe_eval(constraint, name, opts):
                    continue
                opt_set.checks.append(Check(files[i - 1], lineno, line, expect))
    return list(sets.values())
