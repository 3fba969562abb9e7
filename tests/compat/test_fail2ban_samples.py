"""banish gives fail2ban's verdicts on fail2ban's own annotated sample logs.

Reads the sample logs and filter.d of the installed Debian ``fail2ban`` package (never copied
into this repo), runs every annotated line under every option set through ``banish regex
--json`` with fail2ban's test clock, and compares match, host and time. At least 99% must agree
and every disagreement must be explained in KNOWN_GAPS.md.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import datetime
from pathlib import Path

import pytest

from banish.cli.main import main as banish_main
from tests.failjson import (
    FAIL2BAN_TEST_NOW,
    FAIL2BAN_TEST_TZ,
    OptionSet,
    fail2ban_test_clock,
    read_samples,
)

TEST_NOW = FAIL2BAN_TEST_NOW
CONFIG_DIR = "/etc/fail2ban"
GAPS_FILE = Path(__file__).with_name("KNOWN_GAPS.md")
_GAP_KEY = re.compile(r"^- `([^`]+)`")


def _logs_dir() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/python3*/dist-packages/fail2ban/tests/files/logs")):
        if os.path.isdir(candidate):
            return candidate
    return None


LOGS_DIR = _logs_dir()
pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(
        (LOGS_DIR is None or not os.path.isdir(os.path.join(CONFIG_DIR, "filter.d")))
        and not os.environ.get("CI"),
        reason="Debian's fail2ban package is not installed (scripts/test installs it)",
    ),
]


def _filter_names() -> list[str]:
    names = []
    for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "filter.d", "*.conf"))):
        name = os.path.basename(path)[:-5]
        if not name.endswith("common") and LOGS_DIR and os.path.isfile(os.path.join(LOGS_DIR, name)):
            names.append(name)
    return names


def _expected_time(text: str) -> str:
    """The sample's local time, to whole seconds (banish's JSON has no fractions)."""
    return datetime.strptime(text.split(".")[0], "%Y-%m-%dT%H:%M:%S").strftime("%Y-%m-%dT%H:%M:%S")


def run_option_set(opt_set: OptionSet, name: str, tmp: Path) -> list[dict[str, object]]:
    log = tmp / f"{abs(hash(opt_set.key))}.log"
    log.write_text("".join(opt_set.prefix_line + c.line + "\n" for c in opt_set.checks),
                   encoding="utf-8")
    argv = ["regex", "--json", "--config", CONFIG_DIR, "--now", str(TEST_NOW)]
    for key, value in opt_set.options.items():
        argv += ["--opt", f"{key}={value}"]
    argv += [str(log), name]
    out = io.StringIO()
    with redirect_stdout(out):
        status = banish_main(argv)
    assert status == 0, f"banish regex failed for {opt_set.key}"
    return [json.loads(line) for line in out.getvalue().splitlines()]


def compare(opt_set: OptionSet, results: list[dict[str, object]]) -> Iterator[tuple[str, str]]:
    """Yield (gap key, what differs) for each check banish does not agree with."""
    assert len(results) == len(opt_set.checks)
    for check, got in zip(opt_set.checks, results, strict=True):
        want = check.expect
        key = f"{check.file}:{check.lineno} {opt_set.key}"
        want_match = bool(want.get("match", False))
        if got["match"] != want_match:
            yield key, f"match: expected {want_match}, got {got['match']}"
            continue
        if not want_match:
            continue
        if "host" in want and got["host"] != want["host"]:
            yield key, f"host: expected {want['host']!r}, got {got['host']!r}"
        if "time" in want and got["time"] != _expected_time(str(want["time"])):
            yield key, f"time: expected {want['time']}, got {got['time']}"


def known_gaps() -> dict[str, str]:
    if not GAPS_FILE.exists():
        return {}
    gaps = {}
    for line in GAPS_FILE.read_text(encoding="utf-8").splitlines():
        m = _GAP_KEY.match(line)
        if m:
            gaps[m.group(1)] = line
    return gaps


def test_fail2ban_sample_logs_agree(tmp_path: Path) -> None:
    assert LOGS_DIR is not None, "fail2ban's sample logs were not found"
    names = _filter_names()
    assert len(names) >= 50, f"expected fail2ban's filters, found {len(names)}"
    total = 0
    misses: dict[str, str] = {}
    with fail2ban_test_clock():
        for name in names:
            for opt_set in read_samples(LOGS_DIR, name):
                if not opt_set.checks:
                    continue
                total += len(opt_set.checks)
                for key, why in compare(opt_set, run_option_set(opt_set, name, tmp_path)):
                    misses[key] = why
    agreement = 1 - len(misses) / total
    report = "\n".join(f"- `{k}` {v}" for k, v in sorted(misses.items()))
    print(f"\n{total} checks, {len(misses)} disagreements, agreement {agreement:.2%}\n{report}")
    gaps = known_gaps()
    unexplained = {k: v for k, v in misses.items() if k not in gaps}
    assert not unexplained, "disagreements not in KNOWN_GAPS.md:\n" + "\n".join(
        f"- `{k}` {v}" for k, v in sorted(unexplained.items()))
    assert agreement >= 0.99, f"agreement {agreement:.2%} is below 99% ({len(misses)}/{total})"


def test_cli_json_contract_in_a_real_process(tmp_path: Path) -> None:
    """The same check through the installed console script, as users and tools call it."""
    log = tmp_path / "one.log"
    log.write_text(
        "Aug 14 11:59:59 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2\n"
        "Aug 14 11:59:59 host sshd[1]: nothing to see\n", encoding="utf-8")
    env = {**os.environ, "TZ": FAIL2BAN_TEST_TZ}
    proc = subprocess.run(
        [sys.executable, "-m", "banish.cli.main", "regex", "--json", "--config", CONFIG_DIR,
         "--now", str(TEST_NOW), str(log), "sshd"],
        capture_output=True, text=True, env=env, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows == [
        {"line": 1, "match": True, "host": "192.0.2.1", "time": "2005-08-14T11:59:59"},
        {"line": 2, "match": False, "host": None, "time": None},
    ]
