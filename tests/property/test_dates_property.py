"""Property tests of date detection: formatted dates parse back, garbage is harmless and quick.

Local time is CET/CEST (fail2ban's test zone) for the whole module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from banish.match.dates import DateDetector

CET = "CET-01CEST-02,M3.5.0,M10.5.0"
NOW = 1124013600.0


@pytest.fixture(scope="module", autouse=True)
def cet() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", CET)
        time.tzset()
        yield
    time.tzset()


def _unambiguous_local(dt: datetime) -> bool:
    """False for wall-clock times that occur twice or never (DST changes)."""
    fields = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, 0, 1)
    winter = time.mktime((*fields, 0))
    summer = time.mktime((*fields, 1))
    ok = [t for t in (winter, summer) if time.localtime(t)[:6] == fields[:6]]
    return len(ok) == 1 or (len(ok) == 2 and winter == summer)


def _local_epoch(dt: datetime) -> float:
    """Whole seconds: fail2ban drops the fraction of strptime-style dates."""
    return time.mktime((dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, 0, 1, -1))


naive_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2029, 12, 30))
offsets = st.integers(min_value=-14 * 4, max_value=14 * 4).map(lambda q: timedelta(minutes=15 * q))


def _offset_text(off: timedelta, colon: bool) -> str:
    minutes = int(off.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    return f"{sign}{hh:02d}:{mm:02d}" if colon else f"{sign}{hh:02d}{mm:02d}"


# layouts without a zone: (strftime format, needs a day above 12 to be unambiguous)
LOCAL_LAYOUTS = [
    ("%Y-%m-%d %H:%M:%S", False),
    ("%Y-%m-%dT%H:%M:%S.%f", False),
    ("%Y/%m/%d %H:%M:%S", False),
    ("%Y.%m.%d %H:%M:%S", False),
    ("%a %b %d %H:%M:%S %Y", False),
    ("%b %d %Y %H:%M:%S", False),
    ("%d/%m/%Y %H:%M:%S", False),
    ("%d-%m-%y %H:%M:%S", False),
    ("%d-%b-%Y %H:%M:%S", False),
    ("%m/%d/%Y:%H:%M:%S", False),
    ("%m-%d-%Y %H:%M:%S.%f", True),  # fail2ban reads 02-03-... as day-month first
    ("<%m/%d/%y@%H:%M:%S>", False),
    ("%y%m%d %H:%M:%S", False),
    ("%b %d, %Y %I:%M:%S %p", False),
    ("%Y%m%dT%H%M%S", False),
]


@settings(max_examples=300, deadline=None)
@given(dt=naive_times, layout=st.sampled_from(LOCAL_LAYOUTS), tail=st.sampled_from(["", " x"]))
def test_local_layouts_parse_back(dt: datetime, layout: tuple[str, bool], tail: str) -> None:
    fmt, needs_big_day = layout
    assume(not needs_big_day or dt.day > 12)
    assume(_unambiguous_local(dt))
    text = dt.strftime(fmt)
    hit = DateDetector.auto().find(text + tail, NOW)
    assert hit is not None
    assert (hit.start, hit.end) == (0, len(text))
    assert hit.time == _local_epoch(dt)


@settings(max_examples=200, deadline=None)
@given(dt=naive_times, off=offsets, form=st.integers(0, 4))
def test_zoned_layouts_parse_back(dt: datetime, off: timedelta, form: int) -> None:
    if form == 0:
        text = dt.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
        off = timedelta(0)
    elif form == 1:
        text = dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + _offset_text(off, colon=True)
    elif form == 2:
        text = dt.strftime("%Y-%m-%d %H:%M:%S ") + _offset_text(off, colon=False)
    elif form == 3:
        text = dt.strftime("%d/%b/%Y:%H:%M:%S ") + _offset_text(off, colon=False)
    else:
        text = dt.strftime("%Y%m%dT%H%M%S") + _offset_text(off, colon=False)
    assume(abs(off) < timedelta(hours=20))  # the zone syntax allows hours 00-19 only
    line = f"[{text}] refused" if form == 3 else f"{text} refused"
    hit = DateDetector.auto().find(line, NOW)
    assert hit is not None and line[hit.start : hit.end] == text
    # fractions of a second are dropped, as fail2ban does
    assert hit.time == dt.replace(microsecond=0, tzinfo=timezone(off)).timestamp()


@settings(max_examples=200, deadline=None)
@given(
    dt=st.datetimes(min_value=datetime(2001, 1, 2), max_value=datetime(2029, 12, 30)),
    ahead=st.integers(min_value=-86399, max_value=200 * 86400),
)
def test_syslog_year_comes_from_now(dt: datetime, ahead: int) -> None:
    """A date without year is this year's unless it lies more than a day after now."""
    assume(_unambiguous_local(dt))
    now = _local_epoch(dt) + ahead
    assume(time.localtime(now).tm_year == dt.year)
    # "A day" is compared on the wall clock, as fail2ban does: on the day DST begins, a line
    # 23 real hours ahead is 24 wall-clock hours ahead (and last year's).
    assume((dt.replace(microsecond=0) - datetime.fromtimestamp(now)).total_seconds() <= 86400)
    text = dt.strftime("%b %d %H:%M:%S")
    hit = DateDetector.auto().find(text + " host sshd[1]: x", now)
    assert hit is not None and (hit.start, hit.end) == (0, len(text))
    assert hit.time == _local_epoch(dt)


FIELDS = {
    "year": ["%Y", "%y"],
    "day": ["%m %d", "%b %d", "%B %d", "%d %b", "%j"],
    "clock": ["%H:%M:%S", "%I:%M:%S %p", "%H:%M"],
}


@settings(max_examples=300, deadline=None)
@given(
    dt=naive_times,
    year=st.sampled_from(FIELDS["year"]),
    day=st.sampled_from(FIELDS["day"]),
    clock=st.sampled_from(FIELDS["clock"]),
    sep=st.sampled_from([" ", "/", "_", " - ", ", "]),
    weekday=st.booleans(),
)
def test_strptime_patterns_parse_back(
    dt: datetime, year: str, day: str, clock: str, sep: str, weekday: bool
) -> None:
    """Any datepattern built from strptime fields reads back what strftime wrote."""
    if clock == "%H:%M":
        dt = dt.replace(second=0)
    assume(_unambiguous_local(dt))
    fmt = sep.join([year, day.replace(" ", sep), clock]) + (" %a" if weekday else "")
    text = dt.strftime(fmt)
    hit = DateDetector.from_pattern("^" + fmt).find(text + " login failed", NOW)
    assert hit is not None and (hit.start, hit.end) == (0, len(text))
    assert hit.time == _local_epoch(dt)


@settings(max_examples=100, deadline=None)
@given(
    seconds=st.integers(min_value=10**9, max_value=2 * 10**9),
    millis=st.integers(0, 999),
    form=st.sampled_from(["EPOCH", "LEPOCH", "{^LN-BEG}TAI64N"]),
)
def test_machine_stamps(seconds: int, millis: int, form: str) -> None:
    if form == "EPOCH":
        text, want = f"{seconds}.{millis:03d}", seconds + millis / 1000
    elif form == "LEPOCH":
        text, want = f"{seconds}{millis:03d}", (seconds * 1000 + millis) / 1000
    else:
        text, want = f"@4{0:07x}{seconds:08x}{millis:08x}", float(seconds)
    hit = DateDetector.from_pattern(form).find(text + " denied", NOW)
    assert hit is not None and (hit.start, hit.end) == (0, len(text))
    assert hit.time == want


# ASCII that dates are made of, plus an Arabic-Indic digit, long s and Kelvin sign (which
# \d and case-insensitive matching accept) and a tab
NOISY = st.text(
    alphabet=st.sampled_from(
        [
            *"0123456789:/.-+ TZ@[]()<>,AaJjnNbBuUlLgGpPmMeEsSoOcCtTvVdD",
            "\u0663",
            "\u017f",
            "\u212a",
            "\t",
        ]
    ),
    max_size=120,
)
PATTERNS = [
    None,
    "{^LN-BEG}",
    r"^<\d+>\d+\s+{DATE}",
    "^[^\\[]*\\[({DATE})\n{^LN-BEG}",
    "{^LN-BEG}Epoch\n{^LN-BEG}",
    "LEPOCH",
    "%d.%m.%Y %H:%M\n{^LN-BEG}TAI64N",
    "(?:%Z )?%b %d %H:%M:%S",
    "%Exz %H:%M:%S",
]


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(NOISY, min_size=1, max_size=8), pattern=st.sampled_from(PATTERNS))
def test_garbage_is_harmless(lines: list[str], pattern: str | None) -> None:
    detector = DateDetector.auto() if pattern is None else DateDetector.from_pattern(pattern)
    for line in lines:
        started = time.perf_counter()
        hit = detector.find(line, NOW)
        assert time.perf_counter() - started < 0.5
        if hit is not None:
            assert 0 <= hit.start <= hit.end <= len(line)
            assert hit.time is None or isinstance(hit.time, float)


@settings(max_examples=5, deadline=None)
@given(chunk=st.text(alphabet=st.sampled_from(list("0123456789: -/.AugJanMDT")), min_size=1,
                     max_size=24))  # fmt: skip
def test_long_lines_stay_linear(chunk: str) -> None:
    line = (chunk * (256 * 1024 // len(chunk) + 1))[: 256 * 1024]
    started = time.perf_counter()
    DateDetector.auto().find(line, NOW)
    assert time.perf_counter() - started < 10.0


def test_one_megabyte_line() -> None:
    """Only the first MAX_DATE_SCAN characters are searched: bounded work on hostile lines."""
    junk = "a/b?c=1&d=2:3 " * 75_000
    detector = DateDetector.auto()
    started = time.perf_counter()
    hit = detector.find("2005-08-13 20:10:05 GET /" + junk, NOW)
    assert hit is not None and hit.time == datetime(2005, 8, 13, 18, 10, 5, tzinfo=UTC).timestamp()
    assert detector.find("GET /" + junk + " 2005-08-13 20:10:05", NOW) is None
    fresh = DateDetector.auto()
    assert fresh.find("GET /" + junk + " 2005-08-13 20:10:05", NOW) is None
    assert time.perf_counter() - started < 1.0


# Minutes around the CET spring and autumn changes (jumps there fall between minutes), and
# below ``ahead`` puts "now + 1 day" inside a minute: a date without a year further ahead is
# last year's, so that minute's seconds jump a year.
_JUMPY_MINUTES = [datetime(2005, 3, 27, 1, 59), datetime(2005, 3, 27, 2, 0),
                  datetime(2005, 10, 30, 2, 59), datetime(2005, 10, 30, 2, 0),
                  datetime(2005, 10, 30, 3, 0)]


@settings(max_examples=200, deadline=None)
@given(
    minutes=st.lists(st.one_of(st.sampled_from(_JUMPY_MINUTES), st.datetimes(
        min_value=datetime(2005, 1, 1), max_value=datetime(2005, 12, 30)).map(
        lambda d: d.replace(second=0, microsecond=0))), min_size=1, max_size=4),
    seconds=st.lists(st.integers(0, 60), min_size=2, max_size=30),
    picks=st.lists(st.integers(0, 3), min_size=30, max_size=30),
    # now - 1 day in mid-minute puts the year turn inside a minute of the log
    ahead=st.sampled_from([-86400 + 30, -86400 + 1, -86400 - 30, 0, 30, 7 * 86400]),
    layout=st.sampled_from(["%b %d %H:%M:{s} host sshd[1]: x", "%Y-%m-%d %H:%M:{s} x",
                            "%Y-%m-%dT%H:%M:{s}.123+0200 x", "%d/%b/%Y:%H:%M:{s} x"]),
)
def test_lines_sharing_a_minute_get_the_times_of_lines_alone(
        minutes: list[datetime], seconds: list[int], picks: list[int], ahead: int,
        layout: str) -> None:
    """One detector fed a log (which reuses a minute's conversion for its other seconds)
    gives every line the time a fresh detector gives that line alone."""
    now = _local_epoch(minutes[0]) + ahead
    lines = [minutes[p % len(minutes)].strftime(layout).format(s=f"{s:02d}")
             for p, s in zip(picks, seconds, strict=False)]
    running = DateDetector.auto()
    for line in lines:
        alone = DateDetector.auto().find(line, now)
        hit = running.find(line, now)
        assert (hit and (hit.start, hit.end, hit.time, hit.dropped)) == (
            alone and (alone.start, alone.end, alone.time, alone.dropped)), line
