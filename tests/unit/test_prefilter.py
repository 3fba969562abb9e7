"""Required literals are really required, and the chunk scan finds exactly those lines."""

from __future__ import annotations

import pytest

from banish.match.prefilter import Need, Prefilter, required_literals
from banish.match.tags import expand_tags


@pytest.mark.parametrize(("regex", "words"), [
    (r"^Failed password for .* from <HOST>", {"Failed password for "}),
    (r"^(?:Invalid|Illegal) user \S+ from <HOST>", {"Invalid user ", "Illegal user "}),
    (r"^[aA]uth (?:failed|error) <HOST>", {"auth failed ", "Auth failed ", "auth error ", "Auth error "}),
    (r"^x+ <HOST>", None),
    (r"^(?:abc)? <HOST>", None),
    (r"^\[\]LOGIN FAILED from <HOST>", {"]LOGIN FAILED from "}),
])
def test_required_literals(regex: str, words: set[str] | None) -> None:
    need = required_literals(expand_tags(regex))
    if words is None:
        assert need is None or all(len(w) >= 3 for w in need.words)
        if regex.startswith("^x+"):
            assert need is None
    else:
        assert need is not None and set(need.words) == words


def test_caseless_literals() -> None:
    need = required_literals("(?i)^authentication FAILURE for <HOST>")
    assert need is not None and need.caseless and need.words == {"authentication failure for "}


@pytest.mark.parametrize("use_hyperscan", [True, False])
def test_candidate_lines(use_hyperscan: bool) -> None:
    pf = Prefilter([Need(frozenset({"Failed password"})), Need(frozenset({"refused"}), True)])
    if not use_hyperscan:
        pf._db = None
    chunk = (b"a Failed password b\n"
             b"nothing\n"
             b"Failed password Failed password twice\n"
             b"REFUSED connect\n"
             b"tail Failed password")
    starts = pf.candidate_starts(chunk)
    lines = [chunk[s:chunk.find(b"\n", s) if chunk.find(b"\n", s) >= 0 else len(chunk)]
             for s in starts]
    assert lines == [b"a Failed password b", b"Failed password Failed password twice",
                     b"REFUSED connect", b"tail Failed password"]
