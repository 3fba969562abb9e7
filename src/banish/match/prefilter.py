"""Cheap rejection of lines that cannot match: the reason banish is fast.

Most lines of a real log match nothing. For every failregex we derive a set of literal strings of
which at least one must occur in any line it matches (from the parsed regex, not by guessing);
a whole chunk of the log is then scanned for all literals at once — with Hyperscan when it is
installed, else with ``bytes.find`` per literal — and only lines holding a literal are handed to
the full regex and date machinery. A filter whose regexes yield no usable literal simply turns
the prefilter off (every line is a candidate): correctness never depends on it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

try:
    import hyperscan as _hs
except ImportError:  # pragma: no cover - depends on the platform's wheels
    _hs = None

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

_MIN_LITERAL = 3  # shorter literals would select most lines anyway
_MAX_ALTERNATIVES = 16


@dataclass(frozen=True, slots=True)
class Need:
    """Any match contains one of ``words`` (compared lower-cased when ``caseless``)."""

    words: frozenset[str]
    caseless: bool = False

    def score(self) -> tuple[int, int]:
        return (min(len(w) for w in self.words), -len(self.words))


def _date_safe_pieces(word: str) -> list[str]:
    """Split a literal where a cut-out date could have stood.

    Regexes match the line *without its date*, so a literal like ``[]LOGIN`` may be ``[`` and
    ``]LOGIN`` in the raw line. A date always starts and ends with a word character and never
    touches another one, so the cut can only fall between two non-word characters.
    """
    pieces: list[str] = []
    start = 0
    for i in range(1, len(word)):
        if not _is_word(word[i - 1]) and not _is_word(word[i]):
            pieces.append(word[start:i])
            start = i
    pieces.append(word[start:])
    return pieces


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _better(a: Need | None, b: Need | None) -> Need | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.score() >= b.score() else b


def _seq_need(items: Any, caseless: bool) -> Need | None:
    best: Need | None = None
    run: list[str] = []

    def flush() -> None:
        nonlocal best, run
        for word in _date_safe_pieces("".join(run)):
            if len(word) >= _MIN_LITERAL:
                best = _better(best, Need(frozenset([word.lower() if caseless else word]),
                                          caseless))
        run = []

    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if op is _c.SUBPATTERN:
            add_flags, del_flags = av[1], av[2]
            sub_caseless = (caseless or bool(add_flags & _c.SRE_FLAG_IGNORECASE)) and not (
                del_flags & _c.SRE_FLAG_IGNORECASE)
            if sub_caseless == caseless:
                inner = list(av[3])
                if all(o is _c.LITERAL for o, _ in inner):
                    run.extend(chr(v) for _, v in inner)
                    continue
            flush()
            best = _better(best, _seq_need(av[3], sub_caseless))
            continue
        flush()
        if op is _c.BRANCH:
            best = _better(best, _branch_need(av[1], caseless))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            best = _better(best, _seq_need(av[2], caseless))
        elif op is _c.ATOMIC_GROUP:
            best = _better(best, _seq_need(av, caseless))
    flush()
    return best


def _branch_need(branches: Iterable[Any], caseless: bool) -> Need | None:
    words: set[str] = set()
    any_caseless = caseless
    for branch in branches:
        need = _seq_need(branch, caseless)
        if need is None:
            return None
        any_caseless = any_caseless or need.caseless
        words |= need.words
    if not words or len(words) > _MAX_ALTERNATIVES:
        return None
    if any_caseless:
        words = {w.lower() for w in words}
    return Need(frozenset(words), any_caseless)


def required_literals(pattern: str, flags: int = 0) -> Need | None:
    """Literals one of which every match of ``pattern`` contains; None if there are none."""
    try:
        parsed = _parser.parse(pattern, flags)
    except Exception:
        return None
    caseless = bool(parsed.state.flags & _c.SRE_FLAG_IGNORECASE)
    need = _seq_need(list(parsed), caseless)
    if need is not None and need.caseless and not all(w.isascii() for w in need.words):
        return None  # bytes.lower() and Hyperscan fold ASCII only; play safe
    return need


class Prefilter:
    """Finds candidate lines in a chunk of bytes for one or more filters' literal needs."""

    def __init__(self, needs: Iterable[Need]) -> None:
        words: dict[tuple[bytes, bool], None] = {}
        for need in needs:
            for word in need.words:
                words[(word.encode("utf-8"), need.caseless)] = None
        self.words = list(words)
        self._db: Any = None
        if _hs is not None and self.words:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            exprs = [_escape(w) for w, _ in self.words]
            flags = [(_hs.HS_FLAG_CASELESS if ci else 0) for _, ci in self.words]
            db.compile(expressions=exprs, ids=list(range(len(exprs))), flags=flags)
            self._db = db

    @property
    def engine(self) -> str:
        return "hyperscan" if self._db is not None else "bytes.find"

    def candidate_starts(self, chunk: bytes) -> list[int]:
        """Sorted start offsets of the lines in ``chunk`` that hold any literal."""
        ends: list[int] = []
        if self._db is not None:
            def on_match(_id: int, _frm: int, to: int, _flags: int, _ctx: object) -> None:
                ends.append(to)
            self._db.scan(chunk, match_event_handler=on_match)
        else:
            lowered: bytes | None = None
            for word, caseless in self.words:
                hay = chunk
                if caseless:
                    if lowered is None:
                        lowered = chunk.lower()
                    hay = lowered
                find = hay.find
                pos = find(word)
                while pos >= 0:
                    ends.append(pos + len(word))
                    nl = hay.find(b"\n", pos)
                    if nl < 0:
                        break
                    pos = find(word, nl + 1)
            ends.sort()
        starts: list[int] = []
        next_line_at = -1
        rfind = chunk.rfind
        find = chunk.find
        for end in ends:
            if end <= next_line_at:
                continue
            start = rfind(b"\n", 0, end - 1) + 1
            starts.append(start)
            nl = find(b"\n", end - 1)
            next_line_at = len(chunk) if nl < 0 else nl
        return starts


def _escape(word: bytes) -> bytes:
    return b"".join(b"\\x%02x" % b for b in word)
