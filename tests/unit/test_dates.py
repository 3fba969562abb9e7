"""Date detection: which text is the date, what time it is, and fail2ban's rules around it.

All cases run under fail2ban's test clock: local time CET/CEST and now = 2005-08-14 12:00:00
CEST. Expected times are written with their UTC offset so they do not depend on the process TZ.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from banish.errors import ConfigError
from banish.match.datefields import TimeContext, zone_minutes
from banish.match.dates import DateDetector, DateHit, parse_logtimezone

NOW = 1124013600.0  # 2005-08-14 12:00:00 CEST (10:00:00 UTC)
CET = "CET-01CEST-02,M3.5.0,M10.5.0"


@pytest.fixture(autouse=True)
def cet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", CET)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def found(detector: DateDetector, line: str, now: float = NOW) -> tuple[str, float | None] | None:
    hit = detector.find(line, now)
    if hit is None:
        return None
    assert 0 <= hit.start <= hit.end <= len(line)
    return line[hit.start : hit.end], hit.time


def tai64n(seconds: int, nanos: int = 0) -> str:
    return f"@4{0:07x}{seconds:08x}{nanos:08x}"


# (line, date text, time) with fail2ban's default templates and a fresh detector
DEFAULT_CASES: dict[str, tuple[str, str | None, str | None]] = {
    "syslog": (
        "Aug 14 11:00:01 web01 sshd[411]: Invalid user kim from 203.0.113.9",
        "Aug 14 11:00:01",
        "2005-08-14T11:00:01+02:00",
    ),
    "syslog, tomorrow is still this year": (
        "Aug 15 11:00:01 web01 cron[9]: job",
        "Aug 15 11:00:01",
        "2005-08-15T11:00:01+02:00",
    ),
    "syslog, more than a day ahead is last year": (
        "Aug 16 11:00:01 web01 cron[9]: job",
        "Aug 16 11:00:01",
        "2004-08-16T11:00:01+02:00",
    ),
    "syslog, winter time, space-padded day": (
        "Jan  3 04:05:06 gw kernel: drop",
        "Jan  3 04:05:06",
        "2005-01-03T04:05:06+01:00",
    ),
    "syslog, upper case month": (
        "AUG 14 09:08:07 box app: x",
        "AUG 14 09:08:07",
        "2005-08-14T09:08:07+02:00",
    ),
    "asctime with weekday and year": (
        "Mon Jan 03 04:05:06 2005 [client 198.51.100.4] denied",
        "Mon Jan 03 04:05:06 2005",
        "2005-01-03T04:05:06+01:00",
    ),
    "asctime in brackets with microseconds": (
        "[Tue Mar 01 10:20:30.123456 2005] [auth:error] [pid 7] nope",
        "Tue Mar 01 10:20:30.123456 2005",
        "2005-03-01T10:20:30+01:00",
    ),
    "asctime with the year before the time": (
        "Wed Feb 09 2005 07:08:09.5 app: login failed",
        "Wed Feb 09 2005 07:08:09.5",
        "2005-02-09T07:08:09+01:00",
    ),
    "ISO 8601 UTC": (
        "2005-08-14T09:30:00Z sshd: refused",
        "2005-08-14T09:30:00Z",
        "2005-08-14T09:30:00+00:00",
    ),
    "ISO 8601 with fraction and +hh:mm": (
        "2005-08-14 09:30:00.250+05:30 app: x",
        "2005-08-14 09:30:00.250+05:30",
        "2005-08-14T04:00:00+00:00",
    ),
    "ISO 8601 with a spaced +hhmm": (
        "2005-02-01 13:14:15 +0100 login failed",
        "2005-02-01 13:14:15 +0100",
        "2005-02-01T13:14:15+01:00",
    ),
    "ISO date, local summer time": (
        "2005-07-01 00:00:00 auth failure",
        "2005-07-01 00:00:00",
        "2005-07-01T00:00:00+02:00",
    ),
    "nginx error log": (
        "2005/02/01 13:14:15 [error] 77#0: *3 no user found",
        "2005/02/01 13:14:15",
        "2005-02-01T13:14:15+01:00",
    ),
    "syslog-ng dots": (
        "2005.02.01 13:14:15 fw: blocked",
        "2005.02.01 13:14:15",
        "2005-02-01T13:14:15+01:00",
    ),
    "day/month/year": (
        "03/02/2005 13:14:15 vnc: rejected",
        "03/02/2005 13:14:15",
        "2005-02-03T13:14:15+01:00",
    ),
    "day-month-two-digit-year": (
        "03-02-05 13:14:15 vnc: rejected",
        "03-02-05 13:14:15",
        "2005-02-03T13:14:15+01:00",
    ),
    "apache access log": (
        '198.51.100.4 - - [03/Feb/2005:13:14:15 -0500] "GET / HTTP/1.0" 401 12',
        "03/Feb/2005:13:14:15 -0500",
        "2005-02-03T13:14:15-05:00",
    ),
    "bind with milliseconds": (
        "03-Feb-2005 13:14:15.252 client 198.51.100.4#5353: denied",
        "03-Feb-2005 13:14:15.252",
        "2005-02-03T13:14:15+01:00",
    ),
    "month/day/year:time": (
        "02/03/2005:13:14:15 [198.51.100.4] login failed",
        "02/03/2005:13:14:15",
        "2005-02-03T13:14:15+01:00",
    ),
    "month-day-year with milliseconds": (
        "02-28-2005 13:14:15.252 rejected",
        "02-28-2005 13:14:15.252",
        "2005-02-28T13:14:15+01:00",
    ),
    "epoch seconds": (
        "1124013600 proxy TCP_DENIED/403",
        "1124013600",
        "2005-08-14T10:00:00+00:00",
    ),
    "time only, earlier today": (
        "11:00:00 radius: reject",
        "11:00:00",
        "2005-08-14T11:00:00+02:00",
    ),
    "time only, later means yesterday": (
        "13:00:00 radius: reject",
        "13:00:00",
        "2005-08-13T13:00:00+02:00",
    ),
    "angle-bracketed month/day/yy@time": (
        "<08/13/05@20:10:05> ftpd: bad password",
        "<08/13/05@20:10:05>",
        "2005-08-13T20:10:05+02:00",
    ),
    "mysql yymmdd": (
        "050813 20:10:05 [Warning] Access denied for user",
        "050813 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "12-hour clock, PM": (
        "Aug 13, 2005 8:10:05 PM org.example.Auth fail",
        "Aug 13, 2005 8:10:05 PM",
        "2005-08-13T20:10:05+02:00",
    ),
    "12-hour clock, 12 AM is midnight": (
        "Aug 13, 2005 12:10:05 AM org.example.Auth fail",
        "Aug 13, 2005 12:10:05 AM",
        "2005-08-13T00:10:05+02:00",
    ),
    "month-day-yy at line begin": (
        "Aug-13-05 20:10:05 [worker] rejected",
        "Aug-13-05 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "compact ISO, local": (
        "20050813T201005 gateway: denied",
        "20050813T201005",
        "2005-08-13T20:10:05+02:00",
    ),
    "compact ISO, UTC": (
        "20050813 201005Z gateway: denied",
        "20050813 201005Z",
        "2005-08-13T20:10:05+00:00",
    ),
    "zone name before syslog date": (
        "PDT Aug 13 20:10:05 monitor: fail",
        "PDT Aug 13 20:10:05",
        "2005-08-13T20:10:05-07:00",
    ),
    "zone offset before syslog date": (
        "+02:00 Aug 13 20:10:05 monitor: fail",
        "+02:00 Aug 13 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "two non-word chars may precede a line-begin date": (
        "[(Aug 14 11:00:01 x",
        "Aug 14 11:00:01",
        "2005-08-14T11:00:01+02:00",
    ),
    "a date in the message is found too": (
        "login failed at 2005-08-13 20:10:05 from 198.51.100.4",
        "2005-08-13 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "a date glued to a word is not a date": ("session x2005-08-13 20:10:05 ended", None, None),
    "no date": ("Accepted publickey for bob from 192.0.2.33 port 2222", None, None),
}


@pytest.mark.parametrize(
    ("line", "text", "iso"), list(DEFAULT_CASES.values()), ids=list(DEFAULT_CASES)
)
def test_default_templates(line: str, text: str | None, iso: str | None) -> None:
    result = found(DateDetector.auto(), line)
    if text is None:
        assert result is None
    else:
        assert result == (text, epoch(iso) if iso else None)


def test_epoch_keeps_its_fraction() -> None:
    assert found(DateDetector.auto(), "[1124013600.125] nsd: refused") == (
        "1124013600.125",
        1124013600.125,
    )


def test_selinux_audit_epoch() -> None:
    line = "type=USER_AUTH msg=audit(1123926896.812:291): pid=1 res=failed"
    assert found(DateDetector.auto(), line) == ("1123926896.812", 1123926896.812)


def test_tai64n() -> None:
    line = tai64n(1123920000, 5000) + " qmail: refused"
    assert found(DateDetector.auto(), line) == (line.split()[0], 1123920000.0)


def test_invalid_date_keeps_span_without_time() -> None:
    hit = DateDetector.auto().find("Feb 30 10:00:00 host x", NOW)
    assert hit == DateHit(0, 15, None)


def test_unknown_zone_abbreviation_drops_the_line() -> None:
    # fail2ban raises on a zone it does not know and loses the line
    hit = DateDetector.from_pattern("^%Z %H:%M:%S").find("QQQ 10:00:00 x", NOW)
    assert hit == DateHit(0, 12, None, dropped=True)


# (datepattern, line, date text, time)
PATTERN_CASES: dict[str, tuple[str, str, str | None, str | None]] = {
    "strptime fields at line start": (
        "^%m/%d/%Y %H:%M:%S",
        "08/13/2005 20:10:05 [webmail] failed",
        "08/13/2005 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "anchored pattern does not match mid-line": (
        "^%m/%d/%Y %H:%M:%S",
        "x 08/13/2005 20:10:05",
        None,
        None,
    ),
    "a prefix inside the pattern is cut out with the date": (
        "^L %d/%m/%Y - %H:%M:%S",
        "L 13/08/2005 - 20:10:05: bad rcon",
        "L 13/08/2005 - 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "rfc5424 prefix with {DATE}": (
        r"^<\d+>\d+\s+{DATE}",
        "<34>1 2005-08-13T20:10:05.003Z host app - - - failed",
        "<34>1 2005-08-13T20:10:05.003Z",
        "2005-08-13T20:10:05+00:00",
    ),
    "own group around {DATE}": (
        "^[^\\[]*\\[({DATE})\n{^LN-BEG}",
        '198.51.100.4 - - [13/Aug/2005:20:10:05 +0000] "GET /x HTTP/1.1" 404',
        "13/Aug/2005:20:10:05 +0000",
        "2005-08-13T20:10:05+00:00",
    ),
    "{^LN-BEG} only tries dates at the line begin": (
        "{^LN-BEG}",
        "login failed at 2005-08-13 20:10:05",
        None,
        None,
    ),
    "{^LN-BEG} allows two leading non-word chars": (
        "{^LN-BEG}",
        "((2005-08-13 20:10:05 x",
        "2005-08-13 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "{^LN-BEG} refuses three": ("{^LN-BEG}", "(((2005-08-13 20:10:05 x", None, None),
    "milliseconds since the epoch": (
        "LEPOCH",
        "1124013600123 proxy denied",
        "1124013600123",
        "2005-08-14T10:00:00.123+00:00",
    ),
    "microseconds since the epoch": (
        "LEPOCH",
        "1124013600123456 proxy denied",
        "1124013600123456",
        "2005-08-14T10:00:00.123456+00:00",
    ),
    "epoch inside a pattern": (
        r"^\[{EPOCH}\]",
        "[1124013600] refused",
        "[1124013600]",
        "2005-08-14T10:00:00+00:00",
    ),
    "tai64n at line begin": (
        "{^LN-BEG}TAI64N",
        tai64n(1123920000) + " imap-login: failed",
        tai64n(1123920000),
        "2005-08-13T08:00:00+00:00",
    ),
    "full month name": (
        "%B %d %Y %H:%M:%S",
        "August 13 2005 20:10:05 denied",
        "August 13 2005 20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "day of the year": (
        "^%Y %j %H:%M:%S",
        "2005 045 10:00:00 denied",
        "2005 045 10:00:00",
        "2005-02-14T10:00:00+01:00",
    ),
    "week number and weekday": (
        "^%Y w%W %a %H:%M",
        "2005 w06 Mon 10:00 denied",
        "2005 w06 Mon 10:00",
        "2005-02-07T10:00:00+01:00",
    ),
    "12-hour clock after noon": (
        "^%I:%M:%S %p",
        "12:30:00 PM denied",
        "12:30:00 PM",
        "2005-08-13T12:30:00+02:00",
    ),
    "literal percent": (
        "^100%% at %H:%M:%S",
        "100% at 10:00:00 quota",
        "100% at 10:00:00",
        "2005-08-14T10:00:00+02:00",
    ),
    "zone with %Exz": (
        "^%Y-%m-%d %H:%M:%S %Exz",
        "2005-08-13 20:10:05 CEST+0100 x",
        "2005-08-13 20:10:05 CEST+0100",
        "2005-08-13T20:10:05+03:00",
    ),
    "unbounded pattern matches inside a word": (
        "{UNB}%H:%M:%S",
        "id=x20:10:05y",
        "20:10:05",
        "2005-08-13T20:10:05+02:00",
    ),
    "empty group: matched, but no date": ("^I\\(()**", "I(imap) login failed", "", None),
    "{DEFAULT} adds nothing after a pattern": (
        "^%d.%m.%Y %H:%M\n{DEFAULT}",
        "Aug 14 11:00:01 host x",
        None,
        None,
    ),
    "{DEFAULT} alone means the defaults": (
        "{DEFAULT}",
        "Aug 14 11:00:01 host x",
        "Aug 14 11:00:01",
        "2005-08-14T11:00:01+02:00",
    ),
    "empty datepattern means the defaults": (
        "\n \n",
        "Aug 14 11:00:01 host x",
        "Aug 14 11:00:01",
        "2005-08-14T11:00:01+02:00",
    ),
}


@pytest.mark.parametrize(
    ("pattern", "line", "text", "iso"), list(PATTERN_CASES.values()), ids=list(PATTERN_CASES)
)
def test_datepattern(pattern: str, line: str, text: str | None, iso: str | None) -> None:
    result = found(DateDetector.from_pattern(pattern), line)
    if text is None:
        assert result is None
    else:
        assert result == (text, epoch(iso) if iso else None)


def test_none_disables_dates() -> None:
    detector = DateDetector.from_pattern("{NONE}")
    assert detector.disabled
    assert detector.find("Aug 14 11:00:01 host x", NOW) == DateHit(0, 0, None)
    assert not DateDetector.auto().disabled


# (logtimezone, line, time)
ZONE_CASES: dict[str, tuple[str, str, str]] = {
    "UTC": ("UTC", "Aug 14 11:00:01 x", "2005-08-14T11:00:01+00:00"),
    "UTC with offset": ("UTC+0200", "Aug 14 11:00:01 x", "2005-08-14T11:00:01+02:00"),
    "bare negative offset": ("-03:00", "Aug 14 11:00:01 x", "2005-08-14T11:00:01-03:00"),
    "GMT with hh:mm": ("GMT+03:00", "2005-08-14 11:00:01 x", "2005-08-14T11:00:01+03:00"),
    "abbreviation is a fixed offset": ("CET", "Aug 14 11:00:01 x", "2005-08-14T11:00:01+01:00"),
    "zone in the line wins": ("UTC+0500", "2005-08-14 11:00:01Z x", "2005-08-14T11:00:01+00:00"),
}


@pytest.mark.parametrize(("tz", "line", "iso"), list(ZONE_CASES.values()), ids=list(ZONE_CASES))
def test_logtimezone(tz: str, line: str, iso: str) -> None:
    hit = DateDetector.auto(logtimezone=tz).find(line, NOW)
    assert hit is not None and hit.time == epoch(iso)


@pytest.mark.parametrize("tz", ["Europe/Paris", "UTC+2", "+2500", "XYZ", "utc"])
def test_bad_logtimezone(tz: str) -> None:
    with pytest.raises(ConfigError) as err:
        DateDetector.auto(logtimezone=tz)
    assert err.value.where.option == "logtimezone"
    with pytest.raises(ConfigError):
        parse_logtimezone(tz)


@pytest.mark.parametrize(
    "pattern",
    ["%Q %H:%M", "%Y-%m-%d %H:%M (", "%Y %", "%d %d", "%H:%M:%S\n%H:%M:%S", "{^LN-BEG}%Exk:%M"],
    ids=["unknown directive", "bad regex", "stray percent", "field twice", "line twice", "strip"],
)
def test_bad_datepattern(pattern: str) -> None:
    with pytest.raises(ConfigError) as err:
        DateDetector.from_pattern(pattern)
    assert err.value.where.option == "datepattern"


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("Z", 0), ("UTC", 0), ("+0530", 330), ("-03:30", -210), ("-01", -60), ("CEST", 120),
     ("UTC+0100", 60), ("EST-0030", -330), ("NPT", 345)],
)  # fmt: skip
def test_zone_minutes(text: str, minutes: int) -> None:
    assert zone_minutes(text) == minutes


def test_previous_date_position_is_preferred() -> None:
    """fail2ban retries the last winner at the same place before anything else.

    Alone, the second line's date starts at the zone name "PDT" (the leftmost match); after a
    line whose date sat at the same column, the same template is kept and "PDT" stays in the
    message.
    """
    line = "myhost PDT Aug 13 20:10:05 b"
    fresh = found(DateDetector.auto(), line)
    assert fresh == ("PDT Aug 13 20:10:05", epoch("2005-08-13T20:10:05-07:00"))
    detector = DateDetector.auto()
    assert found(detector, "myhost 1.2 Aug 13 20:10:00 a") == (
        "Aug 13 20:10:00",
        epoch("2005-08-13T20:10:00+02:00"),
    )
    assert found(detector, line) == ("Aug 13 20:10:05", epoch("2005-08-13T20:10:05+02:00"))


def test_winning_template_moves_forward() -> None:
    detector = DateDetector.auto()
    first = detector.template_names
    for second in range(3):
        assert detector.find(f"<08/13/05@20:10:0{second}> ftpd: bad password", NOW) is not None
    assert detector.template_names != first
    assert detector.template_names.index("^<%m/%d/%Exy@%H:%M:%S>") < first.index(
        "^<%m/%d/%Exy@%H:%M:%S>"
    )


def test_same_stamp_reuses_the_conversion_only_for_the_same_now() -> None:
    detector = DateDetector.auto()
    a = detector.find("Aug 16 11:00:01 x", NOW)
    b = detector.find("Aug 16 11:00:01 y", NOW + 2 * 86400)
    assert a is not None and b is not None
    assert a.time == epoch("2004-08-16T11:00:01+02:00")
    assert b.time == epoch("2005-08-16T11:00:01+02:00")


@pytest.mark.parametrize(
    "tz",
    [CET, "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", "<-0330>3:30<-0230>,M3.2.0,M11.1.0", "UTC0"],
    ids=["CET", "half-hour DST", "negative half-hour", "UTC"],
)
def test_local_time_matches_mktime_across_transitions(
    tz: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    ctx = TimeContext(None)
    start = int(time.mktime((2005, 1, 1, 0, 0, 0, 0, 1, -1)))
    for step in range(0, 366 * 86400, 1800 + 7):
        y, mo, d, h, mi, s = time.localtime(start + step)[:6]
        # a repeated (fall-back) hour has two answers; both sides ask mktime the same way
        assert ctx.local_epoch(y, mo, d, h, mi, s) == time.mktime((y, mo, d, h, mi, s, 0, 1, -1))


def test_a_new_process_zone_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    detector = DateDetector.auto()
    line = "2005-02-01 13:14:15 x"
    assert found(detector, line) == ("2005-02-01 13:14:15", epoch("2005-02-01T13:14:15+01:00"))
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    assert found(detector, line) == ("2005-02-01 13:14:15", epoch("2005-02-01T13:14:15+00:00"))
    assert found(detector, "Aug 16 11:00:01 y") == (
        "Aug 16 11:00:01",
        epoch("2004-08-16T11:00:01+00:00"),
    )
