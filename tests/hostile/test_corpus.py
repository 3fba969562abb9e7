"""No hostile line makes a filter ban the innocent address it carries.

Runs `corpus.py` through the path `banish regex` and the daemon use (prefilter + ChunkMatcher +
CompiledFilter), under every mode of the filter, and checks every failure's id: it must be the
attacker's address, the host name the server wrote, or nothing at all. Cases a filter cannot
get right are listed in tests/compat/KNOWN_GAPS.md ("Hostile input") and expected to fail.

Also the rule that makes the reverse-DNS shapes safe (`banish.match.tags`): an address capture
that runs straight on into a host name is no address.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

from banish.addr import canonical_address
from banish.config.filterdef import FilterDefinition, load_filter
from banish.match.chunks import ChunkMatcher
from banish.match.filter import CompiledFilter
from banish.match.tags import compile_regex
from banish.paths import packaged_config_dir
from tests.failjson import FAIL2BAN_TEST_NOW, fail2ban_test_clock

from .corpus import CASES, MODES, SHAPES, Variant, variants

FAIL2BAN_CONFIG = "/etc/fail2ban"
GAPS_FILE = Path(__file__).parents[1] / "compat" / "KNOWN_GAPS.md"
_GAP_KEY = re.compile(r"^- `(hostile:[^`]+)`")
_HAVE_FAIL2BAN = os.path.isdir(os.path.join(FAIL2BAN_CONFIG, "filter.d"))


@cache
def _definition(flt: str, mode: str, usedns: str = "") -> FilterDefinition:
    origin, name = flt.split("/")
    config = packaged_config_dir() if origin == "banish" else FAIL2BAN_CONFIG
    options = {"mode": mode} if mode else {}
    if usedns:
        options["usedns"] = usedns
    return load_filter(config, name, options)


def failures(variant: Variant, usedns: str = "") -> list[tuple[str, str]]:
    """(mode, failure id) of every failure the variant's lines give, under every mode."""
    data = "".join(line + "\n" for line in variant.lines).encode("utf-8")
    found = []
    with fail2ban_test_clock():
        for mode in MODES[variant.case.filter]:
            flt = CompiledFilter(_definition(variant.case.filter, mode, usedns))
            for outcome in ChunkMatcher(flt).feed(data, FAIL2BAN_TEST_NOW):
                hit = outcome.result.failure
                if hit is not None and hit.fid is not None:
                    found.append((mode or "default", canonical_address(hit.fid) or hit.fid))
    return found


def offences(variant: Variant) -> list[str]:
    """Every failure (under any mode) whose id is not what the case allows."""
    allowed = variant.attacker
    if allowed is not None:
        allowed = canonical_address(allowed) or allowed
    return [f"mode {mode}: {fid!r}" + (" (the innocent address)" if fid == variant.innocent
                                       else "")
            for mode, fid in failures(variant) if fid != allowed]


def _param(variant: Variant, *, gaps: bool = True) -> object:
    marks: list[pytest.MarkDecorator] = []
    if variant.case.filter.startswith("fail2ban/"):
        marks.append(pytest.mark.skipif(
            not _HAVE_FAIL2BAN and not os.environ.get("CI"),
            reason="Debian's fail2ban package is not installed"))
    if gaps and variant.case.gap:
        marks.append(pytest.mark.xfail(strict=True, reason=variant.case.gap))
    return pytest.param(variant, id=variant.id, marks=marks)


@pytest.mark.parametrize("variant", [_param(v) for v in variants()])
def test_no_innocent_ban(variant: Variant) -> None:
    bad = offences(variant)
    assert not bad, f"{variant.case.filter} banned {bad} for:\n" + "\n".join(variant.lines)


@pytest.mark.parametrize("variant", [_param(v, gaps=False) for v in variants()
                                     if v.attacker and canonical_address(v.attacker) is None])
def test_a_name_is_no_address_with_usedns_no(variant: Variant) -> None:
    """usedns = no takes no host names: the line gives nothing, not the address in the name."""
    assert failures(variant, usedns="no") == []


def test_every_filter_and_shape_is_covered() -> None:
    filters = {c.filter for c in CASES}
    assert filters == set(MODES)
    for flt in ("sshd", "postfix", "dovecot", "nginx-http-auth", "apache-auth"):
        shapes = {c.shape for c in CASES if c.filter == f"fail2ban/{flt}"}
        assert shapes & {"ip-in-user", "log-text-in-user", "email"}, flt
    assert {c.shape for c in CASES} == set(SHAPES)


def test_gap_list_is_true() -> None:
    """KNOWN_GAPS.md lists exactly the corpus's gap keys (each with a reason)."""
    listed = {m.group(1): line for line in GAPS_FILE.read_text(encoding="utf-8").splitlines()
              if (m := _GAP_KEY.match(line))}
    used = {c.gap for c in CASES if c.gap}
    assert used == set(listed), (used ^ set(listed))
    for key, line in listed.items():
        assert len(line) > len(key) + 20, f"{key} has no reason"


# -- the tag rule ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "group", "value"), [
    ("from 192.0.2.1.", "ip4", "192.0.2.1"),
    ("from 192.0.2.1", "ip4", "192.0.2.1"),
    ("from 192.0.2.1:22", "ip4", "192.0.2.1"),
    ("from [192.0.2.1]", "ip4", "192.0.2.1"),
    ("from 192.0.2.1, next", "ip4", "192.0.2.1"),
    ("from 192.0.2.1/24", "ip4", "192.0.2.1"),
    ("from 192.0.2.1)", "ip4", "192.0.2.1"),
    ("from 2001:db8::1.", "ip6", "2001:db8::1"),
    ("from [2001:db8::1]:22", "ip6", "2001:db8::1"),
    ("from 2001:db8::1:51234]", "ip6", "2001:db8::1"),
    ("from 192.0.2.1.evil.example port", "dns", "192.0.2.1.evil.example"),
    ("from 192.0.2.1-x.evil.example port", "dns", "192.0.2.1-x.evil.example"),
    ("from 192.0.2.1x port", "dns", "192.0.2.1x"),
    ("from 192.0.2.1_x port", "dns", "192.0.2.1_x"),
    ("from 192-0-2-1.evil.example.", "dns", "192-0-2-1.evil.example"),
])
def test_host_tag_takes_whole_names(text: str, group: str, value: str) -> None:
    m = compile_regex("from <HOST>", option="failregex").pattern.search(text)
    assert m is not None and m.group(group) == value, m and m.groupdict()
    if group == "dns":
        assert m.group("ip4") is None and m.group("ip6") is None


@pytest.mark.parametrize("tag", ["<ADDR>", "<IP4>", "<HOST>"])
@pytest.mark.parametrize("tail", [".evil.example", "-x.example", "x", "_x", ".5"])
def test_an_address_running_into_a_name_is_refused(tag: str, tail: str) -> None:
    """Unanchored, so a lazy tail after the tag cannot rescue a prefix of the name."""
    pattern = compile_regex(f"from {tag}(?:.*)$", option="failregex").pattern
    m = pattern.search(f"from 192.0.2.1{tail} port 22")
    assert m is None or (m.groupdict().get("ip4") is None and m.group("dns").endswith(tail))


def test_a_dash_the_regex_asks_for_is_kept() -> None:
    """fail2ban's sshd reads ``Remote: <HOST>-\\d+``: the filter itself says a dash follows."""
    pattern = compile_regex(r"Remote: <HOST>-\d+;", option="failregex").pattern
    m = pattern.search("Remote: 192.0.2.1-4242;Protocol")
    assert m is not None and m.group("ip4") == "192.0.2.1"
    m = pattern.search("Remote: host.example-4242;Protocol")
    assert m is not None and m.group("dns") == "host.example"


def test_usedns_no_refuses_the_name_and_never_takes_its_address() -> None:
    pattern = compile_regex("from <HOST>(?: .*)?$", option="failregex", usedns="no").pattern
    assert pattern.search("from 192.0.2.1.evil.example port 22") is None
    assert pattern.search("from 192.0.2.1 port 22") is not None
