"""SessionIndex's contract: what is open, fail2ban's bounds, framed tokens, the closing-line skip.

The skip is checked against its specification: a line whose regexes can only close a session
is kept exactly when the digits of some open session's id show in it as they do in the id
(framed the same way), or when an open id has no digits to look for.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from banish.match.sessions import (
    MLFID_CACHE_SIZE,
    MLFID_MAX_AGE,
    Candidate,
    SessionIndex,
    holds_framed,
)

OPENS, CLOSES = (0,), (1,)  # regex 0 may open a session; regex 1 can only close one


def chunk_of(lines: Sequence[tuple[str, tuple[int, ...]]]) -> tuple[bytes, list[Candidate]]:
    data, candidates = b"", []
    for text, regexes in lines:
        raw = text.encode()
        candidates.append((len(data), len(data) + len(raw), regexes))
        data += raw + b"\n"
    return data, candidates


def kept(index: SessionIndex, lines: Sequence[tuple[str, tuple[int, ...]]],
         lean: Sequence[int] | None = None) -> list[str]:
    data, candidates = chunk_of(lines)
    lean_list = None if lean is None else [candidates[i] for i in lean]
    return [data[s:e].decode()
            for s, e, _ in index.without_closed(data, candidates, {}, lean_list)]


def index(*open_ids: str) -> SessionIndex:
    idx = SessionIndex(frozenset({1}))
    for n, mlfid in enumerate(open_ids):
        idx.open(mlfid, {"n": n}, 0.0)
    return idx


LINES = [
    ("sshd[100]: closed", CLOSES),
    ("sshd[200]: closed", CLOSES),
    ("sshd[300]: opened", OPENS),
    ("x 100 y closed", CLOSES),
    ("conn<200> closed", CLOSES),
]


def test_nothing_open_drops_every_closing_line() -> None:
    assert kept(index(), LINES) == ["sshd[300]: opened"]


def test_bracketed_id_keeps_closing_lines_that_hold_it_bracketed() -> None:
    # "x 100 y" holds the digits, but not as [100]: it cannot name that session.
    assert kept(index("host sshd[100]"), LINES) == ["sshd[100]: closed", "sshd[300]: opened"]


def test_other_frame_is_searched_for_as_such() -> None:
    assert kept(index("conn<200>"), LINES) == ["sshd[300]: opened", "conn<200> closed"]


def test_ids_in_common_bounds_compare_digit_runs() -> None:
    # " 100 " is framed by spaces, too common to search for: any digit run 100 keeps a line.
    assert kept(index("x 100 y"), LINES) == [
        "sshd[100]: closed", "sshd[300]: opened", "x 100 y closed"]


def test_an_id_without_digits_keeps_every_line() -> None:
    assert kept(index("nodigits"), LINES) == [text for text, _ in LINES]


def test_the_skip_sees_sessions_opened_while_it_runs() -> None:
    idx = index()
    data, candidates = chunk_of([("sshd[300]: opened", OPENS), ("sshd[300]: closed", CLOSES)])
    it = idx.without_closed(data, candidates, {})
    assert next(it) == candidates[0]
    idx.open("h sshd[300]", {}, 0.0)  # what processing the first line does
    assert list(it) == [candidates[1]]


def test_lean_list_serves_only_while_every_open_id_is_bracketed() -> None:
    lines = [("sshd[1]: opened", OPENS), ("a sshd[7] closed", CLOSES), ("c<9> closed", CLOSES)]
    assert kept(index("h sshd[7]"), lines, lean=[0]) == ["sshd[1]: opened"]
    # An id framed otherwise is open: lines the lean list left out count again.
    assert kept(index("h sshd[7]", "c<9>"), lines, lean=[0]) == [
        "sshd[1]: opened", "a sshd[7] closed", "c<9> closed"]


def test_closing_only_is_memoized_per_regex_tuple() -> None:
    data, candidates = chunk_of(LINES)
    memo: dict[tuple[int, ...], bool] = {}
    list(index().without_closed(data, candidates, memo))
    assert memo == {CLOSES: True, OPENS: False}


def test_open_close_and_what_is_open() -> None:
    idx = index("h sshd[100]", "h sshd[101]", "h sshd[100]x")
    assert list(idx.fields) == ["h sshd[100]", "h sshd[101]", "h sshd[100]x"]
    assert sorted(idx.bracketed_tokens()) == [b"100", b"100", b"101"]
    idx.close("h sshd[100]")
    idx.close("never opened")
    assert idx.bracketed_tokens() == [b"101", b"100"]
    # Token 100 is still open through the other id: its lines are kept.
    assert kept(idx, LINES) == ["sshd[100]: closed", "sshd[300]: opened"]
    idx.close("h sshd[100]x")
    idx.close("h sshd[101]")
    assert not idx.fields
    assert kept(idx, LINES) == ["sshd[300]: opened"]


def test_only_bracketed_tokens_are_handed_to_the_helper() -> None:
    assert index("conn<200>", "x 5 y", "h sshd[7]").bracketed_tokens() == [b"7"]
    assert index("conn<200>").bracketed_tokens() == []


def test_a_session_is_forgotten_five_minutes_after_it_opened() -> None:
    idx = SessionIndex(frozenset({1}))
    idx.open("h sshd[1]", {"a": 1}, 1000.0)
    assert idx.current("h sshd[1]", 1000.0 + MLFID_MAX_AGE) == {"a": 1}
    assert idx.current("h sshd[1]", 1000.0 + MLFID_MAX_AGE + 1) is None
    assert "h sshd[1]" not in idx.fields
    assert kept(idx, LINES) == ["sshd[300]: opened"]  # and out of the token index


def test_at_most_a_hundred_sessions_the_oldest_goes() -> None:
    idx = SessionIndex(frozenset({1}))
    for n in range(MLFID_CACHE_SIZE + 1):
        idx.open(f"h sshd[{n}]", {}, float(n))
    assert len(idx.fields) == MLFID_CACHE_SIZE
    assert "h sshd[0]" not in idx.fields and f"h sshd[{MLFID_CACHE_SIZE}]" in idx.fields
    assert b"0" not in idx.bracketed_tokens()


def test_reopening_an_open_session_replaces_its_fields_only() -> None:
    idx = index("h sshd[5]")
    idx.open("h sshd[5]", {"new": 1}, 10.0)
    assert idx.fields["h sshd[5]"] == {"new": 1}
    idx.close("h sshd[5]")
    assert idx.bracketed_tokens() == [] and kept(idx, LINES) == ["sshd[300]: opened"]


@pytest.mark.parametrize(("line", "tokens", "want"), [
    (b"a [12] b", {b"12"}, True),
    (b"a [123] b", {b"12"}, False),
    (b"a [x] [12] b", {b"12"}, True),
    (b"a [12 b", {b"12"}, False),
    (b"[12]", set(), False),
])
def test_holds_framed(line: bytes, tokens: set[bytes], want: bool) -> None:
    data = b"zz\n" + line + b"\nzz"
    assert holds_framed(data, 3, 3 + len(line), (b"[", b"]"), tokens) is want
