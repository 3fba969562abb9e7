"""Property: the prefilter never rejects a line that a failregex matches.

Strings are generated *from* each failregex of banish's own filters and of the installed
fail2ban filters; every one of them must be a candidate line.
"""

from __future__ import annotations

import glob
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banish.config.filterdef import load_filter
from banish.errors import ConfigError
from banish.match.prefilter import Prefilter, required_literals
from banish.match.tags import expand_tags
from banish.paths import packaged_config_dir


def _regexes() -> list[str]:
    found: list[str] = []
    for config in (packaged_config_dir(), "/etc/fail2ban"):
        for path in sorted(glob.glob(os.path.join(config, "filter.d", "*.conf"))):
            name = os.path.basename(path)[:-5]
            if name.endswith("common"):
                continue
            for mode in ("normal", "aggressive"):
                try:
                    d = load_filter(config, name, {"mode": mode})
                except ConfigError:
                    continue
                if d.maxlines > 1:
                    continue
                found.extend(expand_tags(r) for r in d.failregex)
    usable = []
    for r in dict.fromkeys(found):
        if required_literals(r) is None:
            continue
        try:
            st.from_regex(r).example  # noqa: B018 - only checks hypothesis supports it
            re.compile(r)
        except Exception:
            continue
        usable.append(r)
    return usable


REGEXES = _regexes()


def test_there_are_regexes_to_check() -> None:
    assert len(REGEXES) >= 20


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(REGEXES).flatmap(lambda r: st.tuples(st.just(r), st.from_regex(r))))
def test_generated_matches_are_candidates(case: tuple[str, str]) -> None:
    regex, text = case
    line = text.replace("\n", " ").replace("\r", " ")
    if re.search(regex, line) is None:
        return  # replacing newlines changed the text's meaning; nothing to check
    need = required_literals(regex)
    assert need is not None
    assert Prefilter([need]).candidate_starts(line.encode("utf-8")) == [0], (regex, line)
