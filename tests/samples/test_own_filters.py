"""banish's own filter library: every annotated sample line gives its stated verdict.

Table-driven over ``src/banish/filters/samples/<filter>`` (failJSON format), under every option
set a file lists, through the same prefilter + matcher path as ``banish regex``. A failregex that
no sample line exercises is a failure: a regex without a sample is an untested regex.
"""

from __future__ import annotations

import glob
import os
from datetime import datetime

import pytest

from banish.config.filterdef import load_filter
from banish.match.chunks import ChunkMatcher
from banish.match.filter import CompiledFilter
from banish.paths import packaged_config_dir
from tests.failjson import FAIL2BAN_TEST_NOW, fail2ban_test_clock, read_samples

NOW = FAIL2BAN_TEST_NOW
CONFIG = packaged_config_dir()
SAMPLES = os.path.join(CONFIG, "samples")
REQUIRED = ["sshd", "postfix", "dovecot", "nginx-http-auth", "nginx-botsearch", "apache-auth",
            "mysqld-auth", "recidive"]


def _filters() -> list[str]:
    return sorted(os.path.basename(p)[:-5]
                  for p in glob.glob(os.path.join(CONFIG, "filter.d", "*.conf"))
                  if not p.endswith("common.conf"))


def test_library_is_complete() -> None:
    names = _filters()
    assert set(REQUIRED) <= set(names), set(REQUIRED) - set(names)
    for name in names:
        assert os.path.isfile(os.path.join(SAMPLES, name)), f"filter {name} has no sample log"


@pytest.mark.parametrize("name", _filters())
def test_samples(name: str) -> None:
    problems: list[str] = []
    used_sources: set[str] = set()
    regexes: dict[str, list[str]] = {}
    with fail2ban_test_clock():
        for opt_set in read_samples(SAMPLES, name):
            if not opt_set.checks:
                continue
            definition = load_filter(CONFIG, name, opt_set.options)
            flt = CompiledFilter(definition)
            used: set[int] = set()
            data = "".join(opt_set.prefix_line + c.line + "\n" for c in opt_set.checks)
            outcomes = {o.index: o for o in ChunkMatcher(flt).feed(data.encode("utf-8"), NOW)}
            for i, check in enumerate(opt_set.checks):
                outcome = outcomes.get(i)
                hits = outcome.result.hits if outcome else []
                used.update(h.regex_index for h in hits)
                hit = outcome.result.failure if outcome else None
                where = f"{check.file}:{check.lineno} {opt_set.key}"
                want = check.expect
                if bool(want.get("match", False)) != (hit is not None):
                    problems.append(f"{where}: match expected {want.get('match', False)}")
                    continue
                if hit is None:
                    continue
                if "host" in want and hit.fid != want["host"]:
                    problems.append(f"{where}: host {hit.fid!r} != {want['host']!r}")
                if "time" in want:
                    got = None if hit.time is None else datetime.fromtimestamp(hit.time)
                    if got is None or got.strftime("%Y-%m-%dT%H:%M:%S") != want["time"].split(".")[0]:
                        problems.append(f"{where}: time {got} != {want['time']}")
            used_sources.update(flt.failregex[i].source for i in used)
            regexes[opt_set.key] = [c.source for c in flt.failregex]
    for key, sources in regexes.items():
        for index, source in enumerate(sources):
            if source not in used_sources:
                problems.append(f"{key}: failregex {index} has no sample: {source}")
    assert not problems, "\n".join(problems)
