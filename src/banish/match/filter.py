"""The matcher: one compiled filter turning log lines into failures (pure; ``now`` passed in).

Owns the per-filter state fail2ban keeps between lines — the multi-line buffer (``maxlines``),
the last date seen, and how a match merges into the multi-line session of its ``<F-MLFID>`` —
and applies ``prefregex``, ``failregex`` and ``ignoreregex`` with fail2ban's verdicts. Which
sessions are open, and which lines cannot concern any of them, is `banish.match.sessions`'
(`SessionIndex`). It does no I/O and reads no clock; the prefilter (``prefilter.py``) decides
which lines are worth handing to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..config.filterdef import FilterDefinition
from ..errors import ConfigError
from ..events import Failure
from .dates import DateDetector
from .forgery import layout_for
from .sessions import Candidate, SessionIndex
from .tags import CompiledRegex, compile_regex

# A date-less line borrows the previous line's date when that is this recent (seconds).
_LAST_DATE_WINDOW = 60


@dataclass(slots=True)
class Hit:
    """A failregex that matched. Not every hit is a failure: see ``is_failure``."""

    regex_index: int
    fid: str | None
    time: float | None
    nofail: bool
    fields: dict[str, object]
    lines: list[str] = field(default_factory=list)

    @property
    def is_failure(self) -> bool:
        return self.fid is not None and not self.nofail

    def to_failure(self, now: float) -> Failure:
        """The event the core counts; a hit without a date happened ``now``."""
        user = self.fields.get("user")
        fields = {k: str(v) for k, v in self.fields.items() if v is not None}
        return Failure(self.fid or "", self.time if self.time is not None else now,
                       self.regex_index, tuple(self.lines),
                       str(user) if user is not None else None, fields)


@dataclass(slots=True)
class LineResult:
    """What one line did: its hits, and whether an ignoreregex threw a match away."""

    hits: list[Hit]
    ignored: bool = False
    time: float | None = None
    forged: bool = False
    """A failregex matched a line the client forged (`banish.match.forgery`); not read."""

    @property
    def failure(self) -> Hit | None:
        for hit in self.hits:
            if hit.is_failure:
                return hit
        return None


class _Dropped(Exception):
    """The line's date is one fail2ban cannot read; it drops the whole line."""


class CompiledFilter:
    """A filter definition compiled once; ``process`` is called for every candidate line."""

    def __init__(self, definition: FilterDefinition, *, logtimezone: str | None = None) -> None:
        try:
            self._compile(definition, logtimezone)
        except ConfigError as exc:
            raise exc.located(file=definition.file or None, section="Definition") from exc

    def _compile(self, definition: FilterDefinition, logtimezone: str | None) -> None:
        self.definition = definition
        usedns = definition.usedns
        self.maxlines = definition.maxlines
        multiline = self.maxlines > 1
        self.journal = definition.logtype == "journal"
        self.prefregex: CompiledRegex | None = None
        if definition.prefregex:
            self.prefregex = compile_regex(definition.prefregex, option="prefregex",
                                           usedns=usedns, multiline=multiline)
        self.failregex = [compile_regex(r, option="failregex", usedns=usedns, multiline=multiline)
                          for r in definition.failregex]
        self.ignoreregex = [compile_regex(r, option="ignoreregex", usedns=usedns,
                                          multiline=multiline)
                            for r in definition.ignoreregex]
        pref_has_id = self.prefregex is not None and self.prefregex.has_id
        for compiled in self.failregex:
            if not compiled.has_id and not pref_has_id:
                raise ConfigError(
                    f"failregex {compiled.source!r} has no host group (<HOST>, <ADDR>, <F-ID> ...)",
                    option="failregex")
        try:
            if definition.datepattern:
                self.dates = DateDetector.from_pattern(definition.datepattern,
                                                       logtimezone=logtimezone)
            else:
                self.dates = DateDetector.auto(logtimezone=logtimezone)
        except ConfigError as exc:
            raise exc.located(option="datepattern") from exc
        self._buffer: list[str] = []
        self._last_date: float | None = None
        self._last_date_text = ""
        self._now = 0.0
        self.session_only = frozenset(i for i, r in enumerate(self.failregex) if r.session_only)
        self.sessions = SessionIndex(self.session_only)
        self._open_sessions = self.sessions.fields  # the same dict: `in` on the hot path
        self.sessions_from_prefregex = (self.prefregex is not None
                                        and "mlfid" in self.prefregex.pattern.groupindex)
        self._layout = layout_for(definition.name)
        self.forged_lines = 0

    # -- per line -----------------------------------------------------------------------------

    def find_date(self, line: str, now: float) -> tuple[str, float | None]:
        """Cut the date out of ``line``; return (rest of line, time or None)."""
        if self.dates.disabled:
            return line, None
        hit = self.dates.find(line, now)
        if hit is None:
            return line, None
        if hit.dropped:
            raise _Dropped
        rest = line[:hit.start] + line[hit.end:]
        if hit.end > hit.start and hit.time is not None:
            self._last_date = hit.time
            self._last_date_text = line[hit.start:hit.end]
            return rest, hit.time
        if hit.end == hit.start:  # an optional date that is absent: last known or now
            if self._last_date is not None and self._last_date > now - _LAST_DATE_WINDOW:
                return line, self._last_date
            return rest, now
        return rest, None

    def process(self, line: str, now: float, time: float | None = None,
                recall: Callable[[], float | None] | None = None,
                only: tuple[int, ...] | None = None) -> LineResult:
        """Feed one line (without its newline). ``time`` is given when the source knows it.

        ``recall`` finds the date of the last dated line when the caller skipped lines (the
        prefilter) and this one has no date of its own. ``only`` names the failregexes worth
        trying (the prefilter found their literals); the others cannot match.
        """
        self._now = now
        if time is not None or self.journal:
            text = line
            when: float | None = now if time is None else time
            self._last_date = when
        else:
            try:
                text, when = self.find_date(line, now)
            except _Dropped:  # fail2ban loses such a line (its date parser fails): so do we
                return LineResult([])
            if when is None:
                if recall is not None:
                    recalled = recall()
                    if recalled is not None:
                        self._last_date = recalled
                if self._last_date is not None and self._last_date > now - _LAST_DATE_WINDOW:
                    when = self._last_date
        return self._find(text, when, only)

    def _find(self, text: str, when: float | None, only: tuple[int, ...] | None = None
              ) -> LineResult:
        if self.maxlines > 1:
            self._buffer.append(text)
            del self._buffer[:-self.maxlines]
            original = list(self._buffer)
        else:
            self._buffer = [text]
            original = self._buffer
        joined = "\n".join(self._buffer) + "\n"
        buf: str | None = joined
        if self.ignoreregex and len(self.ignoreregex) < len(self.failregex) - 2 and \
                self._ignored(joined, None):
            return LineResult([], ignored=True, time=when)
        pre_groups: dict[str, object] = {}
        if self.prefregex is not None:
            m = self.prefregex.pattern.search(joined)
            if m is None:
                return LineResult([], time=when)
            pre_groups = self.prefregex.groups(m)
            content = pre_groups.pop("content", None)
            if content:
                self._buffer = [str(content)]
                buf = None
        hits: list[Hit] = []
        ignored = forged = False
        regexes = self.failregex
        session = pre_groups.get("mlfid")
        closed = session is not None and session not in self._open_sessions
        for index in range(len(regexes)) if only is None else only:
            compiled = regexes[index]
            if closed and compiled.session_only:
                continue  # its match would be a no-op (see CompiledRegex.session_only)
            if buf is None:
                buf = "\n".join(self._buffer) + "\n"
            m = compiled.pattern.search(buf)
            if m is None:
                continue
            fail = compiled.groups(m)
            matched, unmatched = self._split_lines(m, buf, compiled, original)
            copy = self._layout is not None and self._forged(fail, pre_groups, matched)
            forged = forged or copy
            if copy or (self.ignoreregex and self._ignored(buf, matched)):
                ignored = True
                if self.maxlines > 1:
                    self._buffer = unmatched
                buf = None
                continue
            if self.maxlines > 1:
                self._buffer = unmatched
                buf = None
            if pre_groups:
                fail = {**pre_groups, **fail}
            hit = self._make_hit(index, fail, when, matched)
            if hit is not None:
                hits.append(hit)
        if forged and not hits:
            self.forged_lines += 1
        return LineResult(hits, ignored=ignored and not hits, time=when,
                          forged=forged and not hits)

    def take_forged_count(self) -> int:
        """How many lines were not read as forged since the last call (for the daemon's log)."""
        count, self.forged_lines = self.forged_lines, 0
        return count

    def _forged(self, fail: dict[str, object], pre_groups: dict[str, object],
                matched: list[str]) -> bool:
        """Whether a matched line is one the client forged (see `banish.match.forgery`)."""
        assert self._layout is not None
        if len(matched) != 1:  # which line the address came from is not known here
            return any(self._layout.forged(line, None) for line in matched)
        address = None
        for group in ("ip4", "ip6", "dns"):
            value = fail.get(group) or pre_groups.get(group)
            if value is not None:
                address = str(value)
                break
        return self._layout.forged(matched[0], address)

    def _ignored(self, buf: str, matched: list[str] | None) -> bool:
        text = buf if matched is None or self.maxlines <= 1 else "\n".join(matched) + "\n"
        return any(r.pattern.search(text) for r in self.ignoreregex)

    def _split_lines(self, m: re.Match[str], buf: str, compiled: CompiledRegex,
                     original: list[str]) -> tuple[list[str], list[str]]:
        """Which buffered lines the match covered (they leave the buffer) and which not."""
        if len(original) <= 1:
            return list(original), []
        start = buf.rfind("\n", 0, m.start() + 1) + 1
        end_nl = buf.find("\n", max(m.end() - 1, 0))
        end = len(buf) if end_nl < 0 else end_nl + 1
        first = buf.count("\n", 0, start)
        last = buf.count("\n", 0, end)
        matched = list(original[first:last])
        unmatched = list(original[:first])
        if compiled.skiplines:
            skipped: list[str] = []
            for n in range(compiled.skiplines):
                value = m.group(f"skiplines{n}")
                if value:
                    skipped.extend(value.splitlines())
            pos = 0
            for line in skipped:
                for k in range(pos, len(matched)):
                    if matched[k] == line:
                        unmatched.append(matched.pop(k))
                        pos = k
                        break
        unmatched.extend(original[last:])
        return matched, unmatched

    def _make_hit(self, index: int, fail: dict[str, object], when: float | None,
                  matched: list[str]) -> Hit | None:
        mlfid = fail.get("mlfid")
        if mlfid is not None:
            fail = self._merge_multiline(str(mlfid), fail, matched)
            fail = dict(fail)
        else:
            fail["matches"] = [*_as_list(fail.get("matches")), *matched]
        nofail = bool(fail.get("nofail"))
        fid = fail.get("fid")
        host: object = None
        for group in ("ip4", "ip6", "dns"):
            host = fail.get(group)
            if host is not None:
                break
        if host is None:
            host = fid
        if host is None:
            fail["mlfpending"] = 1
            if mlfid is not None:
                self._open_sessions.get(str(mlfid), {})["mlfpending"] = 1
            return Hit(index, None, when, nofail, fail, matched)
        ident = str(fid) if fid is not None else str(host)
        return Hit(index, ident, when, nofail, fail, matched)

    def _merge_multiline(self, mlfid: str, fail: dict[str, object],
                         matched: list[str]) -> dict[str, object]:
        """Combine a match with earlier ones of the same session (``<F-MLFID>``).

        The flags follow fail2ban: NOFAIL lines (e.g. a connect) open a session, a later failure
        turns it into a failure carrying the earlier lines, MLFFORGET closes it, MLFGAINED marks
        a success that cancels pending NOFAIL state.
        """
        nofail_now, forget, cached_soft, gained = 1, 2, 4, 8
        flags = 0
        if fail.get("mlfgained"):
            flags |= gained | nofail_now
            if not fail.get("nofail"):
                fail["nofail"] = fail["mlfgained"]
        elif fail.get("nofail"):
            flags |= nofail_now
        if fail.pop("mlfforget", None):
            flags |= forget
        users: set[object] | None = None
        cached = self.sessions.current(mlfid, self._now)
        if cached is not None:
            if fail.get("ip4") or fail.get("ip6") or fail.get("dns"):
                # This line names its own address: an address the session remembered from an
                # earlier line must not win over it (fail2ban keeps the old ip4 here).
                for group in ("ip4", "ip6", "dns"):
                    cached.pop(group, None)
            users = _add_user(cached, fail.get("user"))
            if cached.pop("nofail", None):
                flags |= cached_soft
            if cached.pop("mlfgained", None):
                flags |= cached_soft
            if flags & gained:
                cached.pop("mlfpending", None)
            if not flags & cached_soft and not cached.get("mlfpending", 0):
                cached.pop("matches", None)
            cached.update((k, v) for k, v in fail.items() if v is not None)
            fail = cached
            if flags & forget:
                self.sessions.close(mlfid)
        elif not flags & forget:
            users = _add_user(fail, fail.get("user"))
            self.sessions.open(mlfid, fail, self._now)
        if fail.pop("mlfpending", 0) or (users and len(users) > 1):
            fail.pop("nofail", None)
            fail.pop("mlfgained", None)
            flags &= ~(gained | nofail_now)
        if not flags & nofail_now:
            lines = [*_as_list(fail.pop("nofail-matches", None)), *_as_list(fail.get("matches"))]
            if not flags & gained:
                lines.extend(matched)
            fail["matches"] = lines
        elif flags & (nofail_now | forget) == nofail_now:
            fail["nofail-matches"] = [*_as_list(fail.get("nofail-matches")), *matched]
        return fail

    # -- open multi-line sessions (SessionIndex), as ChunkMatcher asks for them ----------------

    def bracketed_session_tokens(self) -> list[bytes]:
        """The tokens of the open sessions that sit in ``[...]`` (see ChunkMatcher.prescan)."""
        return self.sessions.bracketed_tokens()

    def without_closed_sessions(
        self, chunk: bytes, candidates: Sequence[Candidate],
        closing_only: dict[tuple[int, ...], bool],
        lean: Sequence[Candidate] | None = None,
    ) -> Iterator[Candidate]:
        """``candidates`` of ``chunk`` without the lines that could only close a session that
        is not open; see `SessionIndex.without_closed`."""
        return self.sessions.without_closed(chunk, candidates, closing_only, lean)


def _as_list(value: object) -> list[str]:
    return list(value) if isinstance(value, list) else []


def _add_user(fail: dict[str, object], user: object) -> set[object] | None:
    users = fail.get("users")
    if not user:
        return users if isinstance(users, set) else None
    if not isinstance(users, set):
        users = set()
        fail["users"] = users
    users.add(user)
    return users
