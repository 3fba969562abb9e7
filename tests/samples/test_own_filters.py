"""banish's own filter library: every annotated sample line gives its stated verdict.

Table-driven over ``src/banish/filters/samples/<filter>`` (failJSON format), under every option
set a file lists, through the same prefilter + matcher path as ``banish regex``. A failregex that
no sample line exercises is a failure: a regex without a sample is an untested regex.
"""

from __future__ import annotations

import glob
import os
from datetime import datetime
from pathlib import Path

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


def sample_problems(config: str, samples: str, name: str) -> list[str]:
    """Every way ``name``'s samples fail to specify it: wrong verdicts, no annotated line at
    all, or a failregex (of any option set, the default one included) no sample exercises."""
    problems: list[str] = []
    used_sources: set[str] = set()
    regexes: dict[str, list[str]] = {
        "default": [c.source for c in CompiledFilter(load_filter(config, name)).failregex]}
    checks = 0
    with fail2ban_test_clock():
        for opt_set in read_samples(samples, name):
            if not opt_set.checks:
                continue
            checks += sum(1 for c in opt_set.checks if c.expect)
            definition = load_filter(config, name, opt_set.options)
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
    if checks == 0:
        problems.append(f"{name}: the sample log has no annotated (# failJSON:) line")
    for key, sources in regexes.items():
        for index, source in enumerate(sources):
            if source not in used_sources:
                problems.append(f"{key}: failregex {index} has no sample: {source}")
    return problems


@pytest.mark.parametrize("name", _filters())
def test_samples(name: str) -> None:
    problems = sample_problems(CONFIG, SAMPLES, name)
    assert not problems, "\n".join(problems)


_TWO_REGEXES = r"""[Definition]
failregex = ^\s*login failed from <HOST>$
            ^\s*bad token from <HOST>$
"""


@pytest.mark.parametrize("sample, expected", [
    ("", "has no annotated (# failJSON:) line"),
    ("# just a comment\nlogin failed from 192.0.2.1\n", "has no annotated (# failJSON:) line"),
    ('# failJSON: { "time": "2005-01-01T00:00:00", "match": true, "host": "192.0.2.1" }\n'
     "2005-01-01 00:00:00 login failed from 192.0.2.1\n", "failregex 1 has no sample"),
    ('# failJSON: { "match": false }\n2005-01-01 00:00:00 login failed from 192.0.2.1\n',
     "match expected False"),
])
def test_the_sample_check_fails_on_missing_or_wrong_samples(
        tmp_path: Path, sample: str, expected: str) -> None:
    (tmp_path / "filter.d").mkdir()
    (tmp_path / "filter.d" / "demo.conf").write_text(_TWO_REGEXES)
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "demo").write_text(sample)
    problems = sample_problems(str(tmp_path), str(tmp_path / "samples"), "demo")
    assert any(expected in p for p in problems), problems
