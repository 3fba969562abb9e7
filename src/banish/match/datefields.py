"""Turn the fields of a matched date into epoch seconds, the way fail2ban 1.0.2 does.

Owns: time-zone text (``+0100``, ``UTC``, ``CEST``, ``GMT+03:00``) to a fixed offset, the
inference of a missing year or day from ``now``, and local-time conversion. It must not search
lines or know templates; :mod:`banish.match.dates` hands it the named groups of a match.

The rules are fail2ban's, including its quirks, because a different epoch for the same line
changes which failures fall into ``findtime``:

* sub-second fields are dropped (fail2ban parses them but never adds them);
* a date without a year takes the year of ``now``; if it then lies more than a day after ``now``
  (compared as naive wall-clock values, even when the date carried a zone), it is last year's;
* a time without a date is today's, or yesterday's if it lies after ``now``;
* a date without a zone is local time of this process (``time.mktime``), unless the detector
  has a ``logtimezone``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date, datetime

__all__ = [
    "FieldPlan",
    "LineDroppedError",
    "TimeContext",
    "UnknownZoneError",
    "fields_to_time",
    "zone_minutes",
]

_UNIX_DAY0 = date(1970, 1, 1).toordinal()

# Zone abbreviations fail2ban knows, by offset in hours. They are fixed offsets: "CET" never
# turns into summer time. Lower-case letters can never be matched (the zone syntax is upper-case).
_ZONES_BY_HOURS: dict[float, str] = {
    -12: "Y",
    -11: "X NUT SST",
    -10: "W CKT HAST HST TAHT TKT",
    -9.5: "MART MIT",
    -9: "V AKST GAMT GIT HADT HNY",
    -8: "U AKDT CIST HAY HNP PST PT",
    -7: "T HAP HNR MST PDT",
    -6: "S CST EAST GALT HAR HNC MDT",
    -5: "R CDT COT EASST ECT EST ET HAC HNE PET",
    -4.5: "HLV VET",
    -4: "Q AST BOT CLT COST EDT FKT GYT HAE HNA PYT",
    -3.5: "HNT NST NT",
    -3: "P ADT ART BRT CLST FKST GFT HAA PMST PYST SRT UYT WGT",
    -2.5: "HAT NDT",
    -2: "O BRST FNT PMDT UYST WGST",
    -1: "N AZOT CVT EGT",
    0: "Z EGST GMT UTC WET WT",
    1: "A CET DFT WAT WEDT WEST",
    2: "B CAT CEDT CEST EET SAST WAST",
    3: "C EAT EEDT EEST IDT MSK",
    3.5: "IRST",
    4: "D AMT AZT GET GST KUYT MSD MUT RET SAMT SCT",
    4.5: "AFT IRDT",
    5: "E AMST AQTT AZST HMT MAWT MVT PKT TFT TJT TMT UZT YEKT",
    5.5: "SLT",
    5.75: "NPT",
    6: "F ALMT BIOT BTT IOT KGT NOVT OMST YEKST",
    6.5: "CCT MMT",
    7: "G CXT DAVT HOVT ICT KRAT NOVST OMSST THA WIB",
    8: "H ACT AWST BDT BNT CAST HKT IRKT KRAST MYT PHT SGT ULAT WITA WST",
    9: "I AWDT IRKST JST KST PWT TLT WDT WIT YAKT",
    9.5: "ACST",
    10: "K AEST ChST PGT VLAT YAKST YAPT",
    10.5: "ACDT LHST",
    11: "L AEDT LHDT MAGT NCT PONT SBT VLAST VUT",
    11.5: "NFT",
    12: "M ANAST ANAT FJT GILT MAGST MHT NZST PETST PETT TVT WFT",
    13: "FJST NZDT",
}
_ZONE_MINUTES: dict[str, int] = {
    abbr: int(hours * 60) for hours, names in _ZONES_BY_HOURS.items() for abbr in names.split()
}

# An optional abbreviation (1 or 3-5 capitals) followed by an optional [+-]hh[[:]mm], nothing else.
_ZONE_TEXT = re.compile(r"(?P<abbr>[A-Z](?:[A-Z]{2,4})?)?(?P<off>[+-][01]\d(?::?\d{2})?)?$")

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")  # fmt: skip
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTH_NUMBER = {name: i for i, name in enumerate(_MONTHS, 1)}
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class LineDroppedError(Exception):
    """A date on which fail2ban's parser fails with something other than ValueError.

    The error escapes fail2ban's date code and its filter drops the whole line, whereas after a
    ValueError (Feb 30, hour 24) it only cuts the date out and falls back to the last known time.
    """


class UnknownZoneError(LineDroppedError):
    """A well-formed zone abbreviation that is not in fail2ban's table (a KeyError there)."""


def zone_minutes(text: str) -> int:
    """Offset east of UTC in minutes for ``UTC``, ``+0200``, ``-03:30``, ``CEST``, ``GMT+03``."""
    m = _ZONE_TEXT.match(text)
    if m is None:
        raise ValueError(f"unknown or unsupported time zone: {text!r}")
    abbr, off = m.group("abbr", "off")
    base = 0
    if abbr is not None:
        try:
            base = _ZONE_MINUTES[abbr]
        except KeyError:
            raise UnknownZoneError(abbr) from None
    if not off:
        return base
    if len(off) == 3:  # [+-]hh
        return base + int(off) * 60
    sign = -1 if off[0] == "-" else 1
    minutes = off[4:6] if off[3] == ":" else off[3:5]
    return base + sign * (int(off[1:3]) * 60 + int(minutes))


class TimeContext:
    """Per-detector conversion state: the log's fixed zone and two caches.

    ``now`` is broken down once per distinct value; local midnight-to-hour offsets are cached
    per wall-clock hour because ``time.mktime`` costs ~2.5 µs when TZ is unset (glibc re-reads
    /etc/localtime). Both caches are dropped whenever ``time.tzset()`` has run since they were
    filled (``time.tzname`` is then a new tuple); an hour that contains a zone transition is
    never cached. A change of /etc/localtime without ``tzset()`` is not noticed.
    """

    __slots__ = ("_hours", "_now", "_now_key", "_tz_mark", "default_tz", "used_now")

    def __init__(self, default_tz: int | None) -> None:
        self.default_tz = default_tz
        self.used_now = False  # set when a conversion needed ``now`` (missing year or day)
        self._now_key: float | None = None
        self._now = (0, 0, 0, 0)
        self._hours: dict[tuple[int, int, int, int], float] = {}
        self._tz_mark: object = time.tzname

    def same_zone(self) -> bool:
        """False once after ``time.tzset()`` ran: local-time caches must be refilled."""
        if time.tzname is self._tz_mark:
            return True
        self._tz_mark = time.tzname
        self._hours.clear()
        self._now_key = None
        return False

    def now_parts(self, now: float) -> tuple[int, int, int, int]:
        """(year, month, day, naive local wall seconds) of ``now``, as fail2ban's MyTime.now().

        Sub-seconds never matter (dates compared with it are whole seconds), so the result is
        kept per second of ``now`` -- unless the fraction rounds up to the next second.
        """
        self.used_now = True
        key = int(now) if now - int(now) < 0.9999995 else now
        if key != self._now_key or not self.same_zone():
            dt = datetime.fromtimestamp(now)
            wall = dt.toordinal() * 86400 + dt.hour * 3600 + dt.minute * 60 + dt.second
            self._now = (dt.year, dt.month, dt.day, wall)
            self._now_key = key
        return self._now

    def local_epoch(self, y: int, mo: int, d: int, h: int, mi: int, s: int) -> float:
        """``time.mktime`` of a naive local time (isdst unknown), through the hour cache."""
        self.same_zone()
        key = (y, mo, d, h)
        base = self._hours.get(key)
        if base is None:
            base = time.mktime((y, mo, d, h, 0, 0, 0, 1, -1))
            if time.mktime((y, mo, d, h, 59, 59, 0, 1, -1)) - base != 3599.0:
                return time.mktime((y, mo, d, h, mi, s, 0, 1, -1))
            if len(self._hours) >= 4096:
                self._hours.clear()
            self._hours[key] = base
        return base + (mi * 60 + s)


def _julian_from_week(year: int, week: int, weekday: int, monday_first: bool) -> int:
    """Day of the year from %U/%W week number and a weekday (0 = Monday), as strptime does."""
    first = date(year, 1, 1).weekday()
    if not monday_first:
        first = (first + 1) % 7
        weekday = (weekday + 1) % 7
    if week == 0:
        return 1 + weekday - first
    return 1 + (7 - first) % 7 + 7 * (week - 1) + weekday


# What a named group contributes; groups with other names (f, G, V, u, p, separators, user
# groups) never change the result.
_DAY, _HOUR, _MINUTE, _SECOND, _MONTH, _MONTH_ABBR, _YEAR, _YEAR2 = range(8)
_MONTH_NAME, _HOUR12, _ZONE, _WEEKDAY_ABBR, _WEEKDAY_NAME, _WEEKDAY_NUM = range(8, 14)
_YEARDAY, _WEEK_SUNDAY, _WEEK_MONDAY = range(14, 17)
_FIELD_CODES = {
    "d": _DAY, "H": _HOUR, "M": _MINUTE, "S": _SECOND, "m": _MONTH, "b": _MONTH_ABBR,
    "Y": _YEAR, "y": _YEAR2, "B": _MONTH_NAME, "I": _HOUR12, "z": _ZONE, "Z": _ZONE,
    "a": _WEEKDAY_ABBR, "A": _WEEKDAY_NAME, "w": _WEEKDAY_NUM, "j": _YEARDAY,
    "U": _WEEK_SUNDAY, "W": _WEEK_MONDAY,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """Which groups of a template regex carry which field, in group order.

    Group order matters: when two groups set the same field (``%m`` and ``%b``), the later
    one that took part wins, as in fail2ban.
    """

    steps: tuple[tuple[int, int], ...]  # (index into match.groups(), field code)
    ampm: int  # index of the %p group, or -1
    second: int = -1
    """Index of the one seconds group, or -1 (none, or several)."""
    minute_groups: tuple[int, ...] = ()
    """Indices of every group the time depends on but the seconds."""

    @classmethod
    def of(cls, regex: re.Pattern[str]) -> FieldPlan:
        names = regex.groupindex
        steps = tuple(
            sorted((i - 1, _FIELD_CODES[n]) for n, i in names.items() if n in _FIELD_CODES)
        )
        ampm = names["p"] - 1 if "p" in names else -1
        seconds = [i for i, code in steps if code == _SECOND]
        second = seconds[0] if len(seconds) == 1 else -1
        others = sorted({i for i, _ in steps if i != second} | ({ampm} if ampm >= 0 else set()))
        return cls(steps, ampm, second, tuple(others))

    def minute_of(self, groups: tuple[str | None, ...]) -> tuple[tuple[str | None, ...], int] | None:
        """(the groups that name the minute, the second 0-59), or None if this date's second
        is not a plain 0-59; see `DateDetector.find`."""
        if self.second < 0:
            return None
        text = groups[self.second]
        if text is None or not text.isdigit() or not text.isascii():
            return None
        second = int(text)
        if second > 59:
            return None
        return tuple([groups[i] for i in self.minute_groups]), second

    def with_second(self, groups: tuple[str | None, ...], second: int) -> tuple[str | None, ...]:
        changed = list(groups)
        changed[self.second] = f"{second:02d}"
        return tuple(changed)


def fields_to_time(
    plan: FieldPlan, groups: tuple[str | None, ...], ctx: TimeContext, now: float
) -> float:
    """Epoch seconds for the groups of a date match (``match.groups()``).

    Raises ValueError for a date fail2ban cannot build (Feb 30, hour 24, malformed zone) and
    LineDroppedError where fail2ban's parser fails otherwise.
    """
    year = month = day = tz = weekday = julian = week = None
    monday_first = False
    hour = minute = second = 0
    for index, code in plan.steps:
        val = groups[index]
        if val is None:
            continue
        if code <= _SECOND:
            if code == _DAY:
                day = int(val)
            elif code == _HOUR:
                hour = int(val)
            elif code == _MINUTE:
                minute = int(val)
            else:
                second = int(val)
        elif code == _MONTH:
            month = int(val)
        elif code == _MONTH_ABBR:
            month = _MONTH_NUMBER.get(val.lower())
            if month is None:  # a case-folding match such as "\u017fep" (long s)
                raise ValueError(f"unknown month {val!r}")
        elif code == _YEAR:
            year = int(val)
        elif code == _YEAR2:
            year = int(val) + 2000  # two-digit years always land in 2000..2099
        elif code == _ZONE:
            tz = 0 if val in ("Z", "UTC", "GMT") else zone_minutes(val)
        elif code == _WEEKDAY_ABBR:
            weekday = _DAYS.index(val.lower())
        elif code == _MONTH_NAME:
            month = _MONTH_NAMES.index(val.lower()) + 1
        elif code == _HOUR12:
            hour = int(val)
            ampm = groups[plan.ampm] if plan.ampm >= 0 else ""
            if ampm is None:  # an optional %p that did not take part
                raise LineDroppedError("12-hour clock with an unmatched AM/PM group")
            ampm = ampm.lower()
            if ampm in ("", "am"):
                if hour == 12:
                    hour = 0
            elif ampm == "pm" and hour != 12:
                hour += 12
        elif code == _WEEKDAY_NAME:
            weekday = _DAY_NAMES.index(val.lower())
        elif code == _WEEKDAY_NUM:
            weekday = (int(val) - 1) % 7
        elif code == _YEARDAY:
            julian = int(val)
        else:
            week = int(val)
            monday_first = code == _WEEK_MONDAY

    now_wall = -1  # filled only when a field is missing
    assume_year = year is None
    if year is None:
        year, _, _, now_wall = ctx.now_parts(now)
    if month is None or day is None:
        if julian is None and week is not None and weekday is not None:
            julian = _julian_from_week(year, week, weekday, monday_first)
        if julian is not None:
            d = date.fromordinal(julian - 1 + date(year, 1, 1).toordinal())
            year, month, day = d.year, d.month, d.day
    assume_today = month is None and day is None
    if month is None and day is None:
        _, month, day, now_wall = ctx.now_parts(now)
    if month is None or day is None:
        raise LineDroppedError("a month without a day, or a day without a month")

    if hour >= 24 or minute >= 60 or second >= 60:
        raise ValueError("time of day out of range")
    wall = date(year, month, day).toordinal() * 86400 + hour * 3600 + minute * 60 + second
    if tz is None:
        tz = ctx.default_tz
    if tz is not None:
        wall -= tz * 60
    moved = False
    # fail2ban compares naive wall-clock values here, even when the date carried a zone
    if assume_today and wall > now_wall:
        wall -= 86400
        moved = True
    if assume_year and wall > now_wall + 86400:
        # last year, keeping the month and day that were parsed even if a zone shift had
        # already moved the wall-clock date
        wall = date(year - 1, month, day).toordinal() * 86400 + wall % 86400
        moved = True
    if tz is not None:
        return float(wall - _UNIX_DAY0 * 86400)
    if moved:
        d = date.fromordinal(wall // 86400)
        year, month, day = d.year, d.month, d.day
        rem = wall % 86400
        hour, minute, second = rem // 3600, rem // 60 % 60, rem % 60
    return ctx.local_epoch(year, month, day, hour, minute, second)
