"""The open multi-line sessions of one filter (``<F-MLFID>``), indexed by the digits of their ids.

Owns `SessionIndex`: which sessions are open and the failure fields each has gathered so far,
fail2ban's bounds on them (100 sessions, each forgotten 5 minutes after it opened), and the
index that lets a line be tested against the open sessions without parsing it: the digit run
of each id (``3182`` of ``sshd[3182]``) and the two characters framing it. From that index come
the skip of lines that could only close a session that is not open
(`SessionIndex.without_closed`) and the bracketed tokens a helper process starts its own
pre-scan from (`SessionIndex.bracketed_tokens`). Pure, like the rest of `banish.match`: no I/O,
no clock (``now`` is an argument). Must not merge or interpret a session's fields; that is
fail2ban's logic in `banish.match.filter.CompiledFilter`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator, Sequence
from functools import lru_cache
from operator import itemgetter

from .prefilter import date_safe_pieces

MLFID_CACHE_SIZE = 100  # fail2ban's bounds: 100 sessions, each forgotten after 5 minutes
MLFID_MAX_AGE = 300.0

Candidate = tuple[int, int, tuple[int, ...]]
"""A prefilter candidate: line start, line end (offsets in the chunk), regexes it may match."""


class SessionIndex:
    """The open sessions of one filter, and how a line is tested against them.

    ``fields`` maps each open session id, oldest first, to the failure fields merged into it so
    far (the same dict for the index's life, so a caller may keep a reference for fast ``in``
    tests); the filter reads and updates those values in place, but opens and closes sessions
    only through `open` and `close`, which keep the token index in step. ``session_only`` are
    the failregexes whose match can only close a session (`CompiledRegex.session_only`).
    """

    __slots__ = ("_frames", "_opened", "_test", "_tokens", "_untokened", "fields",
                 "session_only")

    def __init__(self, session_only: frozenset[int]) -> None:
        self.session_only = session_only
        self.fields: OrderedDict[str, dict[str, object]] = OrderedDict()
        self._opened: dict[str, float] = {}
        self._tokens: Counter[bytes] = Counter()
        self._frames: Counter[bytes] = Counter()  # see without_closed
        self._untokened = 0
        self._test: tuple[bytes, bytes] | int = _NONE_OPEN

    def current(self, mlfid: str, now: float) -> dict[str, object] | None:
        """The fields of open session ``mlfid``; None when it is not open, or opened more than
        `MLFID_MAX_AGE` seconds before ``now`` (it is closed then, as fail2ban forgets it)."""
        fields = self.fields.get(mlfid)
        if fields is not None and self._opened.get(mlfid, now) < now - MLFID_MAX_AGE:
            self.close(mlfid)
            return None
        return fields

    def open(self, mlfid: str, fields: dict[str, object], now: float) -> None:
        """Open session ``mlfid`` at ``now`` with ``fields``; the oldest session is closed when
        more than `MLFID_CACHE_SIZE` are open."""
        if mlfid in self.fields:  # already open: new fields, same tokens
            self.fields[mlfid] = fields
            self._opened[mlfid] = now
            return
        self.fields[mlfid] = fields
        self._opened[mlfid] = now
        token, frame = _session_token(mlfid)
        if token is None:
            self._untokened += 1
        else:
            self._tokens[token] += 1
            self._frames[frame] += 1
        self._retest()
        if len(self.fields) > MLFID_CACHE_SIZE:
            self.close(next(iter(self.fields)))

    def close(self, mlfid: str) -> None:
        """Forget session ``mlfid``; nothing happens when it is not open."""
        self._opened.pop(mlfid, None)
        if self.fields.pop(mlfid, None) is None:
            return
        token, frame = _session_token(mlfid)
        if token is None:
            self._untokened -= 1
        else:
            self._tokens[token] -= 1
            if self._tokens[token] <= 0:
                del self._tokens[token]
            self._frames[frame] -= 1
            if self._frames[frame] <= 0:
                del self._frames[frame]
        self._retest()

    def _retest(self) -> None:
        """How `without_closed` tests a line now (see there)."""
        frames = self._frames
        if self._untokened:
            self._test = _ANY_OPEN
        elif not self._tokens:
            self._test = _NONE_OPEN
        elif len(frames) == 1 and (frame := next(iter(frames)))[:1] not in _COMMON_BOUNDS:
            self._test = BRACKET_FRAME if frame == _BRACKETS else (frame[:1], frame[1:])
        else:
            self._test = _DIGIT_RUNS

    def bracketed_tokens(self) -> list[bytes]:
        """The tokens of the open sessions that sit in ``[...]`` (see ChunkMatcher.prescan)."""
        if self._frames.get(_BRACKETS, 0) == 0:
            return []
        return [token for token, frame in map(_session_token, self.fields)
                if token is not None and frame == _BRACKETS]

    def without_closed(
        self, chunk: bytes, candidates: Sequence[Candidate],
        closing_only: dict[tuple[int, ...], bool],
        lean: Sequence[Candidate] | None = None,
    ) -> Iterator[Candidate]:
        """``candidates`` (line start, end, regexes) of ``chunk`` without the lines whose
        regexes could only close a session (`session_only`) when no open session's id can be
        in them. Lazy: consume one, process it, then ask for the next.

        ``closing_only`` memoizes per regexes tuple whether it is such a line. ``lean``
        (`ChunkMatcher.prescan`) is used while every open token is ``[digits]``. The hot loop of a
        big log (a hundred thousand lines per million), so the test is inlined: when every open
        token sits between the same two characters (``[3182]`` of ``sshd[3182]:``, the usual
        case) only what lies between them is looked up, a couple of ``find`` calls; otherwise
        the chunk's ASCII digit runs (isolated once per chunk) are compared.
        """
        session_only = self.session_only
        tokens = self._tokens
        digits: bytes | None = None
        source, i = (candidates, 0) if lean is None else (lean, 0)
        while True:
            if source is lean and self._test is not BRACKET_FRAME and \
                    self._test != _NONE_OPEN:
                # Not only [digits] tokens open any more: the whole list after the last line
                # taken from lean (lines it dropped may count now).
                after = source[i - 1][0] if i else -1
                source, i = candidates, bisect_right(candidates, after, key=itemgetter(0))
            if i >= len(source):
                return
            candidate = source[i]
            i += 1
            regexes = candidate[2]
            closing = closing_only.get(regexes)
            if closing is None:
                closing = closing_only[regexes] = session_only.issuperset(regexes)
            test = self._test
            if not closing or test == _ANY_OPEN:
                yield candidate
            elif test == _NONE_OPEN:
                continue
            elif not isinstance(test, tuple):  # _DIGIT_RUNS
                if digits is None:
                    digits = chunk.translate(_ONLY_DIGITS)
                if not tokens.keys().isdisjoint(digits[candidate[0]:candidate[1]].split()):
                    yield candidate
            elif holds_framed(chunk, candidate[0], candidate[1], test, tokens):
                # A token of that frame shows in a line that holds it exactly so (the frame
                # characters are in the same date-safe piece of the id).
                yield candidate


def holds_framed(chunk: bytes, start: int, end: int, frame: tuple[bytes, bytes],
                 tokens: Collection[bytes]) -> bool:
    """Does ``chunk[start:end]`` hold ``opener + token + closer`` for one of ``tokens``?
    What stands between each opener and the next closer is looked up."""
    find = chunk.find
    opener, closer = frame
    pos = find(opener, start, end)
    while pos >= 0:
        close = find(closer, pos + 1, end)
        if close < 0:
            return False
        if chunk[pos + 1:close] in tokens:
            return True
        pos = find(opener, pos + 1, end)
    return False


_DIGIT_RUN = re.compile(r"[0-9]+")
# bytes.translate + split: the ASCII digit runs of a line, about 4x faster than a regex.
_ONLY_DIGITS = bytes(c if 0x30 <= c <= 0x39 else 0x20 for c in range(256))


# Characters around a digit run too common in log lines for the framed search to pay off.
_COMMON_BOUNDS = frozenset(bytes([c]) for c in b" \t:.,-/=") | {b""}
# SessionIndex._test besides a frame: every line may belong to an open session (one has no
# token), none is open, or compare digit runs.
_ANY_OPEN, _NONE_OPEN, _DIGIT_RUNS = 0, 1, 2
_BRACKETS = b"[]"
BRACKET_FRAME = (b"[", b"]")
"""The usual frame of a session token (``sshd[3182]``); ChunkMatcher.prescan relies on it."""


@lru_cache(maxsize=4096)
def _session_token(mlfid: str) -> tuple[bytes | None, bytes]:
    """(the longest digit run bounded by non-digits in a date-safe piece of ``mlfid``, the
    characters just before and after it), or (None, b"")."""
    best: tuple[str, str] | None = None
    for piece in date_safe_pieces(mlfid):
        for m in _DIGIT_RUN.finditer(piece):
            if m.start() > 0 and m.end() < len(piece) and (
                    best is None or len(m.group()) > len(best[0])):
                best = m.group(), piece[m.start() - 1] + piece[m.end()]
    if best is None:
        return None, b""
    token, frame = best
    framed = frame.encode("utf-8") if frame.isascii() else b""
    return token.encode("ascii"), framed
