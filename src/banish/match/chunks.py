"""Run one compiled filter over chunks of raw log bytes, paying only for candidate lines.

Owns the glue between the prefilter (which lines could match) and the matcher (what they mean):
line numbering, decoding, and the bits of state a skipped line would have given the matcher
(the last date seen). Pure: bytes and ``now`` in, results out. ``banish regex``, ``banish scan``
and the daemon all go through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .filter import CompiledFilter, LineResult
from .prefilter import Prefilter, required_all
from .sessions import BRACKET_FRAME, holds_framed

_LOOKBACK_LINES = 5


Candidates = list[tuple[int, int, tuple[int, ...]]]


class Prescanned(NamedTuple):
    """What needs only a chunk's bytes, worked out ahead (cli/logfile.py does it in a helper
    process): ``Prefilter.candidates`` of the chunk, its newline count, and ``lean``: the
    candidates without the lines that could only close a session and hold no ``[digits]``
    seen in an earlier line that could open one (see `ChunkMatcher.prescan`)."""

    candidates: Candidates
    newlines: int
    lean: Candidates | None = None


class _LineNumbers:
    """Line numbers of offsets in one chunk, counted only when asked (in increasing order,
    as outcomes come): the daemon and a plain report never ask, and counting the newlines of
    a 100 MB log costs a twentieth of scanning it."""

    __slots__ = ("_chunk", "_index", "_pos")

    def __init__(self, chunk: bytes, base: int) -> None:
        self._chunk, self._index, self._pos = chunk, base, 0

    def at(self, offset: int) -> int:
        if offset >= self._pos:
            self._index += self._chunk.count(b"\n", self._pos, offset)
        else:
            self._index -= self._chunk.count(b"\n", offset, self._pos)
        self._pos = offset
        return self._index


@dataclass(slots=True)
class LineOutcome:
    """A processed line: its text and the result; ``index`` is its 0-based line number in the
    whole input."""

    text: str
    result: LineResult
    _numbers: _LineNumbers
    _offset: int

    @property
    def index(self) -> int:
        return self._numbers.at(self._offset)


def prefilter_for(flt: CompiledFilter) -> Prefilter | None:
    """A prefilter for ``flt``, or None when some regex has no required literal."""
    if flt.maxlines > 1:
        return None  # buffered lines take part in matches: every line must be seen
    needs = []
    for compiled in flt.failregex:
        need = required_all(compiled.pattern.pattern, compiled.pattern.flags)
        if not need:
            return None
        needs.append(need)
    required = None
    if flt.prefregex is not None:
        required = required_all(flt.prefregex.pattern.pattern, flt.prefregex.pattern.flags)
    return Prefilter(needs, required)


def decode(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text[:-1] if text.endswith("\r") else text


class ChunkMatcher:
    """Feeds whole-line chunks to a filter; lines are numbered across chunks."""

    def __init__(self, flt: CompiledFilter, *, use_prefilter: bool = True) -> None:
        self.filter = flt
        self.prefilter = prefilter_for(flt) if use_prefilter else None
        self.lines_seen = 0
        self._closing_only: dict[tuple[int, ...], bool] = {}
        """Per prefilter verdict: can such a line only close a session (memoized)?"""
        self._bracketed: set[bytes] | None = None
        """`prescan`'s ``[digits]`` of every line so far that could open a session."""

    @property
    def prescanner(self) -> Callable[[bytes], Prescanned] | None:
        """`prescan`, or None when there is no prefilter (nothing to work out ahead)."""
        return self.prescan if self.prefilter is not None else None

    def prescan(self, chunk: bytes) -> Prescanned:
        """What ``feed`` needs of ``chunk`` that depends on its bytes alone, for a helper
        process to work out ahead (call it on the chunks in order, in one process).

        ``lean`` serves the usual multi-line case, an id framed like ``sshd[3182]``: a line
        that could only close a session is a no-op unless an open session's id is in it; every
        such id was in an earlier line that could open a session (one ``feed`` processes), so a
        closing line none of whose ``[...]`` holds the digits of such a line's ``[...]`` is
        a no-op whenever all open ids are ``[digits]`` (`CompiledFilter.without_closed_sessions`
        then reads ``lean``). Dropping most closing lines of a busy log here, in the helper,
        spares ``feed`` a loop over a hundred thousand of them.
        """
        assert self.prefilter is not None
        candidates = self.prefilter.candidates(chunk)
        flt = self.filter
        if not (flt.sessions_from_prefregex and flt.session_only):
            return Prescanned(candidates, chunk.count(b"\n"))
        seen = self._bracketed
        if seen is None:  # what was open when this process was forked counts too
            seen = self._bracketed = set(flt.bracketed_session_tokens())
        closing_only, session_only = self._closing_only, flt.session_only
        find = chunk.find
        lean: Candidates = []
        for candidate in candidates:
            start, end, regexes = candidate
            closing = closing_only.get(regexes)
            if closing is None:
                closing = closing_only[regexes] = session_only.issuperset(regexes)
            if closing:
                if holds_framed(chunk, start, end, BRACKET_FRAME, seen):
                    lean.append(candidate)
                continue
            lean.append(candidate)
            pos = find(b"[", start, end)
            while pos >= 0:
                close = find(b"]", pos + 1, end)
                if close < 0:
                    break
                seen.add(chunk[pos + 1:close])
                pos = find(b"[", pos + 1, end)
        return Prescanned(candidates, chunk.count(b"\n"), lean)

    def feed(self, chunk: bytes, now: float, found: Prescanned | None = None
             ) -> Iterator[LineOutcome]:
        """Process a chunk that ends with a newline (or is the final piece of input).

        Yields only the lines that were looked at: with a prefilter, the candidates. ``found``
        is what a helper process already worked out for this chunk, if any.
        """
        candidates: Candidates | None = None
        newlines: int | None = None
        lean: Candidates | None = None
        if found is not None:
            candidates, newlines, lean = found
        base = self.lines_seen
        if not chunk:
            return
        if newlines is None:
            newlines = chunk.count(b"\n")
        line_count = newlines + (0 if chunk.endswith(b"\n") else 1)
        self.lines_seen += line_count
        flt = self.filter
        numbers = _LineNumbers(chunk, base)
        if self.prefilter is None:
            offset = 0
            for raw in chunk.split(b"\n")[:line_count]:
                text = decode(raw)
                yield LineOutcome(text, flt.process(text, now), numbers, offset)
                offset += len(raw) + 1
            return
        if candidates is None:
            candidates = self.prefilter.candidates(chunk)
        lines: Iterable[tuple[int, int, tuple[int, ...]]] = candidates
        if flt.sessions_from_prefregex and flt.session_only:
            # Lines that could only close a session that is not open are no-ops: dropped,
            # lazily, so each verdict sees the sessions the lines before it left.
            lines = flt.without_closed_sessions(chunk, candidates, self._closing_only, lean)
        for start, end, regexes in lines:
            text = decode(chunk[start:end])

            def recall(start: int = start) -> float | None:
                return self._recall_date(chunk, start, now)

            yield LineOutcome(text, flt.process(text, now, recall=recall, only=regexes), numbers,
                              start)

    def _recall_date(self, chunk: bytes, start: int, now: float) -> float | None:
        """The date of the closest dated line before ``start`` (a few lines back at most)."""
        dates = self.filter.dates
        end = start - 1
        for _ in range(_LOOKBACK_LINES):
            if end < 0:
                return None
            begin = chunk.rfind(b"\n", 0, end) + 1
            hit = dates.find(decode(chunk[begin:end]), now)
            if hit is not None and hit.time is not None:
                return float(hit.time)
            end = begin - 1
        return None
