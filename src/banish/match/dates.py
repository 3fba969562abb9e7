"""Find the date in a log line and turn it into epoch seconds, with fail2ban 1.0.2's verdicts.

Owns: the date detector of one filter: which of its templates wins on a line, and the learning
state fail2ban keeps between lines (the last winning template and where its date sat, hit
counts, reordering). Pure: no clock reads, no I/O; ``now`` is an argument. It must not apply
failregex or decide what a missing date means for a failure; the filter matcher does that with
the :class:`DateHit` it gets.

Why state at all: several templates can match one line (a syslog stamp at the start and an ISO
date inside the message). fail2ban keeps a per-filter memory -- it first retries the template
that won the previous line at the same place, it rejects a match that lies further right than
where dates used to be, and it moves winning templates forward. Verdicts depend on that
history, so a detector must see a file's lines in order, one detector per filter.

Template compilation lives in :mod:`banish.match.datetemplates`, field conversion in
:mod:`banish.match.datefields`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from banish.errors import ConfigError
from banish.match.datefields import LineDroppedError, TimeContext, fields_to_time, zone_minutes
from banish.match.datetemplates import (
    EPOCH,
    LONG_EPOCH,
    Template,
    TemplateError,
    anchored_defaults,
    date_templates,
    default_templates,
    line_traits,
    none_template,
    spec_key,
    template_for,
)

__all__ = ["DateDetector", "DateHit", "parse_logtimezone"]

_UNUSED_SECONDS = 300  # a template unused this long may be overtaken regardless of weight
_FAR = 0x7FFFFFFF


MAX_DATE_SCAN = 8192


@dataclass(frozen=True, slots=True)
class DateHit:
    """Where the date is in the line and what time it means.

    ``start``/``end`` span the text the filter cuts out before applying failregex (the line
    without it is ``line[:start] + line[end:]``). ``time`` is None when the span is empty (an
    optional date that was absent: the caller uses the last known time or ``now``) or when the
    date text is invalid (Feb 30: the caller falls back to the last known time). ``dropped``
    marks a date on which fail2ban's own parser raises and loses the whole line (an unknown
    upper-case zone abbreviation, say); the caller should then ignore the line.
    """

    start: int
    end: int
    time: float | None
    dropped: bool = False


_new_hit = object.__new__
_set_start: Callable[[DateHit, int], None] = vars(DateHit)["start"].__set__
_set_end: Callable[[DateHit, int], None] = vars(DateHit)["end"].__set__
_set_time: Callable[[DateHit, float | None], None] = vars(DateHit)["time"].__set__
_set_dropped: Callable[[DateHit, bool], None] = vars(DateHit)["dropped"].__set__


def _hit(start: int, end: int, time: float | None, dropped: bool) -> DateHit:
    """DateHit(start, end, time, dropped) at half the cost of the frozen dataclass __init__,
    which goes through object.__setattr__ for every field; this sets the slots directly."""
    hit: DateHit = _new_hit(DateHit)
    _set_start(hit, start)
    _set_end(hit, end)
    _set_time(hit, time)
    _set_dropped(hit, dropped)
    return hit


class _LineLost(Exception):
    """fail2ban's detector raises on this line (an empty date at the very end of the line)."""

    def __init__(self, match: re.Match[str]) -> None:
        super().__init__()
        self.match = match


class _Slot:
    """A template plus this detector's learning about it."""

    __slots__ = ("distance", "last_used", "template", "wins")

    def __init__(self, template: Template) -> None:
        self.template = template
        self.wins = 0
        self.last_used = 0.0
        self.distance = _FAR  # where in the line its date was last time

    @property
    def weight(self) -> float:
        return self.wins * self.template.weight / max(1, self.distance)


def parse_logtimezone(value: str | None) -> int | None:
    """Minutes east of UTC for a ``logtimezone`` value; ConfigError if fail2ban refuses it."""
    if value is None:
        return None
    try:
        return zone_minutes(value)
    except (ValueError, LookupError, LineDroppedError):
        raise ConfigError(
            f"unknown or unsupported time zone {value!r} (use UTC, UTC+hhmm, +hh:mm or an"
            " abbreviation such as CET)",
            option="logtimezone",
        ) from None


def _templates_for(datepattern: str) -> list[Template]:
    """The templates of a datepattern value, in fail2ban's order, without duplicates."""
    templates: list[Template] = []
    names: set[str] = set()

    def add(template: Template, ignore_duplicate: bool) -> None:
        if template.name in names:
            if ignore_duplicate:
                return
            raise ConfigError(f"date pattern {template.name!r} given twice", option="datepattern")
        names.add(template.name)
        templates.append(template)

    for line in filter(None, (part.strip() for part in re.split("\n+", datepattern))):
        key = spec_key(line)
        try:
            if key == "{^LN-BEG}":
                dup = bool(templates)
                for t in anchored_defaults():
                    add(t, dup)
            elif key == "{DEFAULT}":
                # fail2ban's filter for this keyword rejects every template: it adds nothing, so
                # alone it means "all defaults" and after other lines it means nothing
                pass
            elif "{DATE}" in key:
                dup = bool(templates)
                for t in date_templates(line):
                    add(t, dup)
            elif key == "{NONE}":
                add(none_template(), False)
            else:
                add(template_for(line), False)
        except TemplateError as e:
            raise ConfigError(str(e), option="datepattern") from None
    return templates


_NOT_LINEAR = float("-inf")


class DateDetector:
    """The date detector of one filter (stateful: feed it a log's lines in order)."""

    __slots__ = (
        "_ctx",
        "_first_unused",
        "_last",
        "_last_line",
        "_last_span",
        "_memo",
        "_minute",
        "_need_sets",
        "_slots",
    )

    def __init__(self, templates: Iterable[Template], *, logtimezone: str | None = None) -> None:
        """Use ``templates`` in this order; none means fail2ban's defaults."""
        chosen = list(templates) or list(default_templates())
        self._slots = [_Slot(t) for t in chosen]
        self._ctx = TimeContext(parse_logtimezone(logtimezone))
        # when every template has needs, a line meeting none of them cannot have a date
        needs = {t.needs for t in chosen}
        self._need_sets = () if 0 in needs else tuple(needs)
        self._last = _FAR  # index of the template that won the previous line
        # the previous winning line and its match span: fail2ban compares the characters
        # around that span with the same positions of the next line
        self._last_line = ""
        self._last_span = (1, _FAR)
        self._first_unused = 0
        # the last conversion: (template, match groups, now or None if the time did not
        # depend on now, time); lines of one second share their stamp
        self._memo: tuple[Template | None, tuple[str | None, ...], float | None, float | None] = (
            None,
            (),
            None,
            None,
        )
        # the last minute: (template, minute groups, now or None, time at its second 0; None
        # until a second line of it came, _NOT_LINEAR if it holds a DST change or a day turn)
        self._minute: tuple[Template | None, tuple[str | None, ...], float | None,
                            float | None] = (None, (), None, None)

    @classmethod
    def auto(cls, *, logtimezone: str | None = None) -> DateDetector:
        """fail2ban's default template set (what a filter without datepattern uses)."""
        return cls((), logtimezone=logtimezone)

    @classmethod
    def from_pattern(cls, datepattern: str, *, logtimezone: str | None = None) -> DateDetector:
        """A detector for a filter's ``datepattern`` value (after config interpolation).

        One template per line: strptime-like patterns with fail2ban's extensions, ``{^LN-BEG}``
        (the line-begin defaults), ``{DEFAULT}`` (no-op), patterns containing ``{DATE}``,
        ``EPOCH``, ``LEPOCH``, ``TAI64N``, ``{EPOCH}``/``{LEPOCH}`` inside a regex, or
        ``{NONE}``. An empty value means the defaults. Raises ConfigError (option
        ``datepattern`` or ``logtimezone``) for what fail2ban refuses.
        """
        return cls(_templates_for(datepattern), logtimezone=logtimezone)

    @property
    def disabled(self) -> bool:
        """True for ``{NONE}``: lines carry no date, every line is "now"."""
        return self._slots[0].template is none_template()

    @property
    def template_names(self) -> tuple[str, ...]:
        """Template names in the current (learned) order, for diagnostics."""
        return tuple(s.template.name for s in self._slots)

    def find(self, line: str, now: float) -> DateHit | None:
        """The date of ``line``, or None if no template matches. Updates the learning state.

        Only the first ``MAX_DATE_SCAN`` characters are searched: a date stands near the start
        of a log line, and an attacker's megabyte of text must not cost every template a full
        scan (fail2ban searches the whole line).
        """
        if len(line) > MAX_DATE_SCAN:
            line = line[:MAX_DATE_SCAN]
        try:
            chosen = self._select(line, now)
        except _LineLost as lost:
            start, end = lost.match.span(1)
            return _hit(start, end, None, True)
        if chosen is None:
            return None
        match, template = chosen
        start, end = match.span(1)
        if start == end:
            return _hit(start, end, None, False)
        fields = match.groups()  # the time is a function of these (and maybe of now)
        memo = self._memo
        ctx = self._ctx
        if (
            memo[0] is template
            and memo[1] == fields
            and (memo[2] is None or memo[2] == now)
            and ctx.same_zone()
        ):
            return _hit(start, end, memo[3], False)
        minute = template.plan.minute_of(fields) if template.plan is not None else None
        if minute is not None:
            value = self._from_minute(template, fields, minute, now)
            if value is not None:
                self._memo = (template, fields, now if self._minute[2] is not None else None,
                              value)
                return _hit(start, end, value, False)
        ctx.used_now = False
        try:
            value = self._time(match, fields, template, now)
        except (ValueError, OverflowError):
            value = None
        except (LineDroppedError, TypeError, AttributeError):
            return _hit(start, end, None, True)
        self._memo = (template, fields, now if ctx.used_now else None, value)
        if minute is not None and self._minute[1] != minute[0]:
            # A new minute: remembered, but worked out only when a second line of it comes.
            self._minute = (template, minute[0], None, None)
        return _hit(start, end, value, False)

    def _from_minute(self, template: Template, fields: tuple[str | None, ...],
                     minute: tuple[tuple[str | None, ...], int], now: float) -> float | None:
        """The time of a date whose minute was seen before, as the minute's start plus the
        seconds: most lines of a busy log share their minute with the line before.

        The second line of a minute converts seconds 0 and 59 of it; the shortcut is used only
        when they are exactly 59 s apart. Every jump fail2ban's conversion can make (a day or
        a year back for a date without one, a DST change) is at least an hour, so a minute
        whose ends are 59 s apart is linear all through.
        """
        plan = template.plan
        key, second = minute
        memo_template, memo_key, memo_now, start = self._minute
        if memo_template is not template or memo_key != key or plan is None:
            return None
        if memo_now is not None and memo_now != now:
            return None
        if not self._ctx.same_zone():
            self._minute = (None, (), None, None)
            return None
        if start is None:
            ctx = self._ctx
            ctx.used_now = False
            try:
                first = fields_to_time(plan, plan.with_second(fields, 0), ctx, now)
                last = fields_to_time(plan, plan.with_second(fields, 59), ctx, now)
            except (ValueError, OverflowError, LineDroppedError, TypeError, AttributeError):
                return None
            start = first if last - first == 59 else _NOT_LINEAR
            self._minute = (template, key, now if ctx.used_now else None, start)
        if start == _NOT_LINEAR:
            return None  # every line of this minute takes the full conversion
        return start + second

    def _time(
        self, match: re.Match[str], fields: tuple[str | None, ...], template: Template, now: float
    ) -> float:
        if template.plan is not None:
            return fields_to_time(template.plan, fields, self._ctx, now)
        value: str = match.group(template.value_group)
        kind = template.kind
        if kind == EPOCH:
            return float(value)
        if kind == LONG_EPOCH:
            if len(value) >= 16 and "." not in value:
                return float(value) / 1_000_000
            return float(value) / 1000 if len(value) >= 13 else float(value)
        # TAI64N: hex digits 2..16 are the seconds (fail2ban ignores the TAI-UTC offset)
        return float(int(value[2:17], 16))

    def _unchanged_frame(self, line: str) -> bool:
        """Do the characters around the previous date's span look the same in ``line``?

        Equal outside, or equal inside when that character is not alphanumeric (a date bound
        by a space or bracket may have shifted by one).
        """
        prev = self._last_line
        start, end = self._last_span
        at = prev[start : start + 1]
        before_end = prev[end - 1]
        return (
            line[start - 1 : start] == prev[start - 1 : start]
            or (line[start : start + 1] == at and not at.isalnum())
        ) and (
            line[end : end + 1] == prev[end : end + 1]
            or (line[end - 1 : end] == before_end and not before_end.isalnum())
        )

    def _select(self, line: str, now: float) -> tuple[re.Match[str], Template] | None:
        slots = self._slots
        count = len(slots)
        match: re.Match[str] | None = None
        reserve: tuple[re.Match[str], int, int] | None = None  # (match, start, index)
        skip = -1
        index = self._last
        last_start, last_end = self._last_span

        # 1. the previous winner, searched only within the previous date's span when the
        #    characters around it still look the same
        if index < count:
            template = slots[index].template
            if template.anchored:
                match = template.regex.search(line)
                skip = index
            elif self._unchanged_frame(line):
                match = template.regex.search(line, last_start, last_end)
            else:
                match = template.regex.search(line)
                skip = index
            if match is not None and not (
                count == 1
                or template.anchored
                or (match.start() == last_start and match.end() == last_end)
            ):
                reserve = (match, match.start(), index)  # moved: look for a better one
                match = None

        # 2. all templates in order; a match right of where dates were is only a reserve
        if match is None:
            traits = -1  # NEED_* bits of this line, computed on first use
            if self._need_sets:
                traits = line_traits(line)
                if reserve is None and all(n & ~traits for n in self._need_sets):
                    return None
            for i, slot in enumerate(slots):
                if i == skip:
                    continue
                template = slot.template
                needs = template.needs
                if needs:
                    if traits < 0:
                        traits = line_traits(line)
                    if needs & ~traits:
                        continue
                m = template.regex.search(line)
                if m is None:
                    continue
                dist = m.start()
                if (
                    i + 1 < count
                    and not template.anchored
                    and (dist > slot.distance or dist > last_start)
                ):
                    if reserve is None or dist < reserve[1]:
                        reserve = (m, dist, i)
                    continue
                match, index = m, i
                break
            else:
                if reserve is None:
                    return None
                match, _, index = reserve

        # 3. learn
        slot = slots[index]
        start = match.start()
        slot.wins += 1
        slot.last_used = now
        slot.distance = start
        if self._first_unused == index:
            self._first_unused += 1
        if start >= len(line):  # fail2ban fails reading the char at the date, mid-update
            raise _LineLost(match)
        self._last_line = line
        self._last_span = (start, match.end())
        if index and index != self._last:
            index = self._promote(index)
        self._last = index
        return match, slot.template

    def _promote(self, num: int) -> int:
        """Move a winning template forward (fail2ban's reordering); returns its new index."""
        slots = self._slots
        slot = slots[num]
        stale_before = slot.last_used - _UNUSED_SECONDS
        weight = slot.weight
        pos = self._first_unused if self._first_unused < num else num // 2

        def may_pass(p: int) -> bool:
            return weight > slots[p].weight or stale_before > slots[p].last_used

        if not may_pass(pos):
            if pos == num - 1:
                return num
            pos = num - 1
            if not may_pass(pos):
                return num
        del slots[num]
        slots.insert(pos, slot)
        while self._first_unused < len(slots) and slots[self._first_unused].wins:
            self._first_unused += 1
        return pos
