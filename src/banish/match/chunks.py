"""Run one compiled filter over chunks of raw log bytes, paying only for candidate lines.

Owns the glue between the prefilter (which lines could match) and the matcher (what they mean):
line numbering, decoding, and the bits of state a skipped line would have given the matcher
(the last date seen). Pure: bytes and ``now`` in, results out. ``banish regex``, ``banish scan``
and the daemon all go through here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .filter import CompiledFilter, LineResult
from .prefilter import Prefilter, required_all

_LOOKBACK_LINES = 5


@dataclass(slots=True)
class LineOutcome:
    """A processed line: its 0-based index in the whole input, its text and the result."""

    index: int
    text: str
    result: LineResult


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

    def feed(self, chunk: bytes, now: float) -> Iterator[LineOutcome]:
        """Process a chunk that ends with a newline (or is the final piece of input).

        Yields only the lines that were looked at: with a prefilter, the candidates.
        """
        base = self.lines_seen
        if not chunk:
            return
        line_count = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        self.lines_seen += line_count
        flt = self.filter
        if self.prefilter is None:
            for i, raw in enumerate(chunk.split(b"\n")[:line_count]):
                text = decode(raw)
                yield LineOutcome(base + i, text, flt.process(text, now))
            return
        index = base
        pos = 0
        count = chunk.count
        find = chunk.find
        session_only = flt.session_only if flt.sessions_from_prefregex else frozenset()
        may_be_open = flt.session_may_be_open
        for start, regexes in self.prefilter.candidates(chunk):
            end = find(b"\n", start)
            if end < 0:
                end = len(chunk)
            raw = chunk[start:end]
            if session_only and session_only.issuperset(regexes) and not may_be_open(raw):
                continue  # it could only close a session that is not open: a no-op
            index += count(b"\n", pos, start)  # only for lines we yield: fewer calls
            pos = start
            text = decode(raw)

            def recall(start: int = start) -> float | None:
                return self._recall_date(chunk, start, now)

            yield LineOutcome(index, text, flt.process(text, now, recall=recall, only=regexes))

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
