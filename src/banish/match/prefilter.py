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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_hs: Any
try:
    _hs = importlib.import_module("hyperscan")
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

    def found_in(self, text: str) -> bool:
        if self.caseless:
            text = text.lower()
        return any(word in text for word in self.words)

    def score(self) -> tuple[int, int]:
        return (min(len(w) for w in self.words), -len(self.words))


def date_safe_pieces(word: str) -> list[str]:
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


def _exact_item(op: Any, av: Any, caseless: bool) -> set[str] | None:
    """The few exact strings one regex item can match, or None if they are many or unknown."""
    if op is _c.LITERAL:
        ch = chr(av)
        return {ch.lower() if caseless else ch}
    if op is _c.AT:
        return {""}  # ^, $, \b: consume nothing
    if op is _c.IN:
        chars = set()
        for kind, value in av:
            if kind is not _c.LITERAL:
                return None
            chars.add(chr(value).lower() if caseless else chr(value))
        return chars if 0 < len(chars) <= 4 else None
    if op is _c.SUBPATTERN:
        add_flags, del_flags = av[1], av[2]
        sub_caseless = (caseless or bool(add_flags & _c.SRE_FLAG_IGNORECASE)) and not (
            del_flags & _c.SRE_FLAG_IGNORECASE)
        return _exact(av[3], caseless) if sub_caseless == caseless else None
    if op is _c.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            strings = _exact(branch, caseless)
            if strings is None:
                return None
            out |= strings
        return out if len(out) <= _MAX_ALTERNATIVES else None
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
        low, high, item = av
        inner = _exact(item, caseless)
        if inner is None or high > 3:
            return None
        out = set()
        for count in range(low, high + 1):
            product = {""}
            for _ in range(count):
                product = {a + b for a in product for b in inner}
            out |= product
        return out if len(out) <= _MAX_ALTERNATIVES else None
    return None


def _exact(items: Any, caseless: bool) -> set[str] | None:
    out = {""}
    for op, av in items:
        strings = _exact_item(op, av, caseless)
        if strings is None:
            return None
        out = {a + b for a in out for b in strings}
        if len(out) > _MAX_ALTERNATIVES:
            return None
    return out


def _need_of(strings: set[str], caseless: bool) -> Need | None:
    """Each alternative must leave a date-safe piece of useful length; keep its longest."""
    words = set()
    for string in strings:
        piece = max(date_safe_pieces(string), key=len)
        if len(piece) < _MIN_LITERAL:
            return None
        words.add(piece)
    return Need(frozenset(words), caseless) if words else None


def _seq_needs(items: Any, caseless: bool) -> list[Need]:
    """Every need of a sequence (all of them hold for any match): runs of exact items
    multiply into word sets; required sub-patterns add their own needs."""
    needs: list[Need] = []
    current: set[str] = {""}

    def flush() -> None:
        nonlocal current
        if current != {""}:
            need = _need_of(current, caseless)
            if need is not None:
                needs.append(need)
        current = {""}

    for op, av in items:
        strings = _exact_item(op, av, caseless)
        if strings is not None:
            product = {a + b for a in current for b in strings}
            if len(product) <= _MAX_ALTERNATIVES:
                current = product
                continue
            flush()
            current = strings if len(strings) <= _MAX_ALTERNATIVES else {""}
            continue
        flush()
        if op is _c.SUBPATTERN:
            add_flags, del_flags = av[1], av[2]
            sub_caseless = (caseless or bool(add_flags & _c.SRE_FLAG_IGNORECASE)) and not (
                del_flags & _c.SRE_FLAG_IGNORECASE)
            needs.extend(_seq_needs(av[3], sub_caseless))
        elif op is _c.BRANCH:
            branch = _branch_need(av[1], caseless)
            if branch is not None:
                needs.append(branch)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            needs.extend(_seq_needs(av[2], caseless))
        elif op is _c.ATOMIC_GROUP:
            needs.extend(_seq_needs(av, caseless))
    flush()
    return needs


def _seq_need(items: Any, caseless: bool) -> Need | None:
    """The most selective single need of a sequence."""
    best: Need | None = None
    for need in _seq_needs(items, caseless):
        best = _better(best, need)
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
    needs = required_all(pattern, flags)
    best: Need | None = None
    for need in needs:
        best = _better(best, need)
    return best


_MIN_EXTRA = 10


def required_all(pattern: str, flags: int = 0) -> list[Need]:
    """Needs that every match of ``pattern`` meets *all* of (the most selective few).

    Empty when the pattern has no usable literal. Requiring all of them is what makes a
    line holding only the common half of a regex's text (``Received disconnect from`` but not
    ``: Auth fail``) no candidate for that regex.
    """
    try:
        parsed = _parser.parse(pattern, flags)
    except Exception:
        return []
    caseless = bool(parsed.state.flags & _c.SRE_FLAG_IGNORECASE)
    needs = []
    for need in _seq_needs(list(parsed), caseless):
        if need.caseless and not all(w.isascii() for w in need.words):
            continue  # bytes.lower() and Hyperscan fold ASCII only; play safe
        if need not in needs:
            needs.append(need)
    needs.sort(key=Need.score, reverse=True)
    # Beyond the best need, one more is worth scanning for only if its words are long: a
    # common field label (" from ", " client:") costs a callback on nearly every line for no
    # selectivity, while a long phrase (": Auth fail") separates look-alike lines.
    return needs[:1] + [n for n in needs[1:2] if n.score()[0] >= _MIN_EXTRA]


class Prefilter:
    """Finds candidate lines in a chunk of bytes, and which needs each line satisfies.

    Need ``i`` usually belongs to failregex ``i``: a line then only runs the regexes whose
    literals it holds.
    """

    REQUIRED = -1  # the owner index of ``required``'s words

    def __init__(self, needs: Iterable[Need | Sequence[Need]],
                 required: Need | Sequence[Need] | None = None) -> None:
        """``needs[i]``: what regex ``i`` needs (a Need, or several that must all be met).

        ``required``: need(s) every candidate must meet as well (a prefregex's literals).
        """
        def as_list(item: Need | Sequence[Need] | None) -> list[Need]:
            if item is None:
                return []
            return [item] if isinstance(item, Need) else list(item)

        groups: list[tuple[int, list[Need]]] = []
        if required is not None and as_list(required):
            groups.append((self.REQUIRED, as_list(required)))
        groups.extend((i, as_list(n)) for i, n in enumerate(needs))
        self._arity = {owner: len(group) for owner, group in groups}
        owners: dict[tuple[bytes, bool], list[tuple[int, int]]] = {}
        for owner, group in groups:
            for part, need in enumerate(group):
                for word in need.words:
                    key = (word.encode("utf-8"), need.caseless)
                    owners.setdefault(key, []).append((owner, part))
        self._required = required is not None and bool(as_list(required))
        self._verdicts: dict[frozenset[int], tuple[int, ...] | None] = {}
        self.words = list(owners)
        self._owners = [tuple(owners[w]) for w in self.words]
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

    def _word_hits(self, chunk: bytes) -> list[tuple[int, int]]:
        """(end offset, word id) of every literal occurrence, by offset."""
        hits: list[tuple[int, int]] = []
        if self._db is not None:
            append = hits.append

            def on_match(word_id: int, _frm: int, to: int, _flags: int, _ctx: object) -> None:
                append((to, word_id))
            self._db.scan(chunk, match_event_handler=on_match)
            return hits
        lowered: bytes | None = None
        for word_id, (word, caseless) in enumerate(self.words):
            hay = chunk
            if caseless:
                if lowered is None:
                    lowered = chunk.lower()
                hay = lowered
            find = hay.find
            pos = find(word)
            while pos >= 0:
                hits.append((pos + len(word), word_id))
                nl = hay.find(b"\n", pos)
                if nl < 0:
                    break
                pos = find(word, nl + 1)
        hits.sort()
        return hits

    def _verdict(self, word_ids: frozenset[int]) -> tuple[int, ...] | None:
        """The regexes possible on a line holding exactly these words (memoized: a log has
        few distinct combinations)."""
        hit = self._verdicts.get(word_ids)
        if hit is not None or word_ids in self._verdicts:
            return hit
        met: dict[int, set[int]] = {}
        for word_id in word_ids:
            for owner, part in self._owners[word_id]:
                met.setdefault(owner, set()).add(part)
        arity = self._arity
        result: tuple[int, ...] | None = None
        if not self._required or len(met.pop(self.REQUIRED, ())) >= arity[self.REQUIRED]:
            possible = tuple(sorted(o for o, parts in met.items()
                                    if o >= 0 and len(parts) >= arity[o]))
            result = possible or None
        self._verdicts[word_ids] = result
        return result

    def candidates(self, chunk: bytes) -> list[tuple[int, int, tuple[int, ...]]]:
        """(line start, line end, sorted regex indices) for each line where some regex has all
        its needs met (and the required ones too); the end is the offset of the newline."""
        out: list[tuple[int, int, tuple[int, ...]]] = []
        hits = self._word_hits(chunk)
        rfind = chunk.rfind
        find = chunk.find
        verdict = self._verdict
        size = len(chunk)
        count = len(hits)
        i = 0
        while i < count:
            end, word_id = hits[i]
            nl = find(b"\n", end - 1)
            line_end = size if nl < 0 else nl
            j = i + 1
            if j < count and hits[j][0] <= line_end:
                words = {word_id}
                while j < count and hits[j][0] <= line_end:
                    words.add(hits[j][1])
                    j += 1
                key = frozenset(words)
            else:
                key = frozenset((word_id,))
            i = j
            regexes = verdict(key)
            if regexes is not None:
                out.append((rfind(b"\n", 0, end - 1) + 1, line_end, regexes))
        return out

    def candidate_starts(self, chunk: bytes) -> list[int]:
        """Sorted start offsets of the lines in ``chunk`` that hold any literal."""
        return [start for start, _, _ in self.candidates(chunk)]


def _escape(word: bytes) -> bytes:
    return b"".join(b"\\x%02x" % b for b in word)
