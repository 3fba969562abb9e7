"""Option value parsing: durations, booleans, counts, ignoreip, bantime.* and whole jails."""

from __future__ import annotations

import ipaddress

import pytest

from banish.config.model import (
    PERMANENT,
    BantimeIncrement,
    IgnoreIP,
    JailSettings,
    LogPath,
    UseDns,
)
from banish.config.values import (
    jail_settings,
    parse_backend,
    parse_bantime,
    parse_bool,
    parse_duration,
    parse_factor,
    parse_formula,
    parse_ignoreip,
    parse_int,
    parse_logpath,
    parse_multipliers,
    parse_network,
    parse_usedns,
)
from banish.errors import ConfigError

H, D, W = 3600, 86400, 7 * 86400
MONTH, YEAR = 2629800, 31557600

DURATIONS = [
    ("600", 600),
    ("  600  ", 600),
    ("0", 0),
    ("1.5", 1.5),
    (".5m", 30),
    ("-1", -1),
    ("10m", 600),
    ("10 m", 600),
    ("10M", 600),
    ("1h", H),
    ("1d", D),
    ("1w", W),
    ("1mo", MONTH),
    ("1 month", MONTH),
    ("1y", YEAR),
    ("1 year", YEAR),
    ("48h", 48 * H),
    ("1h 30m", 5400),
    ("0d 1h 30m", 5400),
    ("1hour+30min", 5400),
    ("1d12h", D + 12 * H),
    ("1h30", H + 30),
    ("2 3", 5),
    ("2 weeks", 2 * W),
    ("1 year - 6 mo", YEAR - 6 * MONTH),
    ("6 months", 6 * MONTH),
    ("2*.5y", YEAR),
    ("(1+2) h", 3 * H),
    ("10m/2", 300),
    ("--5", 5),
    # fail2ban's own test vectors for MyTime.str2seconds
    ("1y6mo30w15d12h35m25s", 66821725),
    ("2yy 3mo 4ww 10dd 5hh 30mm 20ss", 74307620),
    ("2 years 3 months 4 weeks 10 days 5 hours 30 minutes 20 seconds", 74307620),
    ("1 year + 1 month - 1 week + 1 day", 33669000),
    ("2 * 0.5 yea + 1*1 mon - 3*1/3 wee + 2/2 day - (2*12 hou 3*20 min 80 sec) ", 33578920),
    ("2*.5y+1*1mo-3*1/3w+2/2d-(2*12h3*20m80s) ", 33578920),
    ("1ye -2mo -3we -4da -5ho -6mi -7se", 24119633),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "findtime") == pytest.approx(seconds)


BAD_DURATIONS = [
    ("", "empty"),
    ("   ", "empty"),
    ("10x", "unknown unit 'x'"),
    ("1 ms", "unknown unit 'ms'"),
    ("h", "must follow a number"),
    ("(1)h", "must follow a number"),
    ("1/0", "division by zero"),
    ("((1)", "missing ')'"),
    ("1)", "unexpected ')'"),
    ("1 .5", "unexpected"),
    ("1e3", "unknown unit 'e'"),
    ("0x10", "unknown unit 'x'"),
    ("1;2", "unexpected ';'"),
    ("__import__('os')", "unexpected '_'"),
    ("1 +", "expected a number"),
    ("(" * 40 + "1" + ")" * 40, "too deeply nested"),
]


@pytest.mark.parametrize(("text", "why"), BAD_DURATIONS)
def test_bad_duration_names_option_and_value(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(text, "findtime")
    message = str(err.value)
    assert message.startswith("findtime: invalid duration")
    assert repr(text.strip()) in message
    assert why in message
    assert err.value.where.option == "findtime"


@pytest.mark.parametrize(
    ("text", "seconds"), [("-1", PERMANENT), ("10m", 600), ("1 day", D), ("-1 ", PERMANENT)]
)
def test_bantime(text: str, seconds: float) -> None:
    assert parse_bantime(text) == seconds


@pytest.mark.parametrize("text", ["0", "-2", "-1d", "-0.5"])
def test_bantime_rejects_zero_and_negative_except_permanent(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^bantime: invalid ban time .*-1 \(permanent\)"):
        parse_bantime(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True), ("Yes", True), ("ON", True), ("1", True), (" true ", True),
        ("false", False), ("no", False), ("Off", False), ("0", False),
    ],
)  # fmt: skip
def test_bool(text: str, value: bool) -> None:
    assert parse_bool(text, "enabled") is value


@pytest.mark.parametrize("text", ["", "maybe", "2", "yes please", "t"])
def test_bad_bool(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^enabled: invalid boolean"):
        parse_bool(text, "enabled")


def test_int() -> None:
    assert parse_int(" 5 ", "maxretry", minimum=1) == 5
    assert parse_int("+3", "maxretry") == 3
    with pytest.raises(ConfigError, match=r"^maxretry: invalid whole number '5x'"):
        parse_int("5x", "maxretry")
    with pytest.raises(ConfigError, match=r"^maxretry: invalid value '0': must be at least 1"):
        parse_int("0", "maxretry", minimum=1)


@pytest.mark.parametrize(
    ("text", "value"),
    [("yes", UseDns.YES), ("WARN", UseDns.WARN), ("no", UseDns.NO), ("raw", UseDns.RAW)],
)
def test_usedns(text: str, value: UseDns) -> None:
    assert parse_usedns(text) is value


def test_bad_usedns() -> None:
    with pytest.raises(ConfigError, match=r"^usedns: invalid value 'sometimes' \(one of yes"):
        parse_usedns("sometimes")


@pytest.mark.parametrize(
    "text", ["auto", "polling", "systemd", "systemd[journalflags=1]", "PyInotify"]
)
def test_backend(text: str) -> None:
    assert parse_backend(f" {text} ") == text


@pytest.mark.parametrize("text", ["", "inotify", "systemd journalflags", "[x]"])
def test_bad_backend(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^backend: unknown backend"):
        parse_backend(text)


def test_logpath() -> None:
    text = (
        "/var/log/auth.log\n  /var/log/nginx/*error.log tail\n\n/var/log/x head\n/srv/my logs/a.log"
    )
    assert parse_logpath(text) == (
        LogPath("/var/log/auth.log"),
        LogPath("/var/log/nginx/*error.log", tail=True),
        LogPath("/var/log/x"),
        LogPath("/srv/my logs/a.log"),
    )
    assert parse_logpath("tail") == (LogPath("tail"),)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


NETWORKS = [
    ("127.0.0.1", "127.0.0.1/32"),
    ("127.0.0.1/8", "127.0.0.0/8"),  # host bits dropped, as fail2ban does
    ("10.0.0.0/255.255.0.0", "10.0.0.0/16"),
    ("::1", "::1/128"),
    ("[::1]", "::1/128"),
    ("[2001:db8::]/32", "2001:db8::/32"),
    ("2001:db8::1/64", "2001:db8::/64"),
    ("::ffff:10.1.2.3", "10.1.2.3/32"),
    ("::ffff:10.1.2.0/120", "10.1.2.0/24"),
    ("0.0.0.0/0", "0.0.0.0/0"),
]


@pytest.mark.parametrize(("text", "expected"), NETWORKS)
def test_network(text: str, expected: str) -> None:
    assert parse_network(text) == net(expected)


def test_not_an_address_is_none() -> None:
    assert parse_network("example.com") is None


@pytest.mark.parametrize(
    "text", ["10.0.0.0/33", "10.0.0.0/x", "example.com/24", "::1/129", "10.0.0.0/-1", "1.2.3/8"]
)
def test_bad_network(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^ignoreip: invalid network"):
        parse_network(text)


def test_ignoreip_list() -> None:
    value = "127.0.0.1/8 ::1, 192.168.1.5\n  home.Example.org. 192.168.1.5 host-1 10.0.0.0/8,,"
    assert parse_ignoreip(value) == IgnoreIP(
        networks=(net("127.0.0.0/8"), net("::1/128"), net("192.168.1.5/32"), net("10.0.0.0/8")),
        names=("home.example.org", "host-1"),
    )
    assert not parse_ignoreip("  ")


@pytest.mark.parametrize(
    "word", ["300.1.2.3", "1.2.3.4.5", "-bad.example", "bad-.example", "a..b", "x_y!", "a" * 64]
)
def test_bad_ignoreip_entry(word: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_ignoreip(f"127.0.0.1 {word}")
    assert str(err.value) == f"ignoreip: invalid address, network or host name {word!r}"


def test_factor_formula_multipliers() -> None:
    assert parse_factor("1") == 1
    assert parse_factor("2.0 / 2.885385") == pytest.approx(0.693147, rel=1e-5)
    f = parse_formula("ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor")
    assert f(ban_time=600, ban_count=3, ban_factor=1) == 4800
    assert parse_multipliers("1 2  4 8\t16") == (1, 2, 4, 8, 16)
    assert parse_multipliers("1 5 30 60 300 720 1440 2880")[-1] == 2880


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: parse_factor("ban.Time"),
            "bantime.factor: invalid factor 'ban.Time': unknown name",
        ),
        (lambda: parse_factor("1/0"), "bantime.factor: invalid factor '1/0': evaluation failed"),
        (
            lambda: parse_formula("__import__('os').system('id')"),
            "bantime.formula: invalid formula \"__import__('os').system('id')\": function",
        ),
        (
            lambda: parse_formula("ban.Time *"),
            "bantime.formula: invalid formula 'ban.Time *': syntax",
        ),
        (
            lambda: parse_multipliers("1 2 x"),
            "bantime.multipliers: invalid multiplier 'x' in '1 2 x'",
        ),
        (lambda: parse_multipliers("1 -2"), "bantime.multipliers: invalid multiplier '-2'"),
        (lambda: parse_multipliers("1 nan"), "bantime.multipliers: invalid multiplier 'nan'"),
    ],
)
def test_bad_increment_values(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ConfigError) as err:
        call()
    assert str(err.value).startswith(message)


def test_jail_settings_defaults_follow_jail_conf() -> None:
    s = jail_settings("sshd", {"enabled": "true", "logpath": "/var/log/auth.log"})
    assert s == JailSettings(
        name="sshd",
        enabled=True,
        filter="sshd",
        logpath=(LogPath("/var/log/auth.log"),),
        backend="auto",
        maxretry=5,
        findtime=600,
        bantime=600,
        maxmatches=None,
        ignoreip=IgnoreIP(),
        ignoreself=True,
        ignorecommand="",
        usedns=UseDns.WARN,
        mode="normal",
        bantime_increment=BantimeIncrement(),
    )
    assert s.matches_kept == 5


def test_jail_settings_all_options() -> None:
    options = {
        "enabled": "yes",
        "filter": "sshd[mode=aggressive]",
        "logpath": "/var/log/auth.log\n/var/log/secure tail",
        "backend": "systemd",
        "maxretry": "3",
        "findtime": "1h",
        "bantime": "1d",
        "maxmatches": "2",
        "ignoreip": "127.0.0.1/8 ::1 home.example.org",
        "ignoreself": "false",
        "ignorecommand": "/usr/local/bin/allowed <ip>",
        "usedns": "no",
        "mode": "aggressive",
        "bantime.increment": "true",
        "bantime.factor": "2",
        "bantime.formula": "ban.Time * banFactor",
        "bantime.multipliers": "1 2 4",
        "bantime.maxtime": "5w",
        "bantime.rndtime": "10m",
        "bantime.overalljails": "on",
        "action": "iptables-multiport",  # not ours: ignored
    }
    s = jail_settings("ssh", options)
    assert (s.maxretry, s.findtime, s.bantime, s.maxmatches, s.matches_kept) == (3, H, D, 2, 2)
    assert s.logpath[1] == LogPath("/var/log/secure", tail=True)
    assert s.ignoreip.names == ("home.example.org",)
    assert (s.ignoreself, s.usedns, s.backend, s.mode) == (
        False,
        UseDns.NO,
        "systemd",
        "aggressive",
    )
    inc = s.bantime_increment
    assert inc.increment and inc.overalljails
    assert (inc.factor, inc.multipliers, inc.maxtime, inc.rndtime) == (2, (1, 2, 4), 5 * W, 600)
    assert inc.formula is not None and inc.formula.source == "ban.Time * banFactor"


def test_empty_values_mean_unset() -> None:
    s = jail_settings("x", {"bantime.rndtime": "", "bantime.maxtime": "  ", "ignoreip": ""})
    assert s.bantime_increment.rndtime is None and s.bantime_increment.maxtime is None
    assert s == JailSettings("x", filter="x")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"findtime": "10 minutes later"}, "[j] findtime: invalid duration '10 minutes later'"),
        ({"findtime": "0"}, "[j] findtime: invalid duration '0': must be positive"),
        ({"bantime": "-5"}, "[j] bantime: invalid ban time '-5'"),
        ({"maxretry": "0"}, "[j] maxretry: invalid value '0': must be at least 1"),
        ({"maxretry": "three"}, "[j] maxretry: invalid whole number 'three'"),
        ({"maxmatches": "-1"}, "[j] maxmatches: invalid value '-1': must be at least 0"),
        ({"enabled": "perhaps"}, "[j] enabled: invalid boolean 'perhaps'"),
        ({"ignoreip": "10.0.0.0/40"}, "[j] ignoreip: invalid network '10.0.0.0/40'"),
        ({"usedns": "always"}, "[j] usedns: invalid value 'always'"),
        ({"bantime.increment": "2"}, "[j] bantime.increment: invalid boolean '2'"),
        ({"bantime.formula": "open('x')"}, "[j] bantime.formula: invalid formula"),
        ({"bantime.maxtime": "-1"}, "[j] bantime.maxtime: invalid duration '-1': must be positive"),
        ({"bantime.rndtime": "-1"}, "[j] bantime.rndtime: must be a duration >= 0, got -1.0"),
        ({"bantime.factor": "inf"}, "[j] bantime.factor: invalid factor 'inf'"),
    ],
)
def test_jail_settings_errors_name_section_option_and_value(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        jail_settings("j", options)
    assert str(err.value).startswith(message)
    assert err.value.where.section == "j"
    located = err.value.located(file="/etc/fail2ban/jail.local")
    assert str(located).startswith("/etc/fail2ban/jail.local " + message)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"maxretry": 0}, "maxretry"),
        ({"findtime": 0.0}, "findtime"),
        ({"findtime": float("inf")}, "findtime"),
        ({"bantime": -2.0}, "bantime"),
        ({"bantime": float("nan")}, "bantime"),
        ({"maxmatches": -1}, "maxmatches"),
    ],
)
def test_model_validates_direct_construction(kwargs: dict[str, float], option: str) -> None:
    with pytest.raises(ConfigError) as err:
        JailSettings("j", **kwargs)  # type: ignore[arg-type]
    assert err.value.where.option == option
    assert err.value.where.section == "j"


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"maxtime": 0.0}, "bantime.maxtime"),
        ({"rndtime": -1.0}, "bantime.rndtime"),
        ({"factor": float("nan")}, "bantime.factor"),
        ({"multipliers": (1.0, -1.0)}, "bantime.multipliers"),
    ],
)
def test_increment_validates(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as err:
        BantimeIncrement(**kwargs)  # type: ignore[arg-type]
    assert err.value.where.option == option


def test_settings_compare_by_value_for_reload() -> None:
    a = jail_settings("j", {"bantime.formula": "ban.Time * 2", "ignoreip": "10.0.0.0/8"})
    b = jail_settings("j", {"bantime.formula": " ban.Time * 2 ", "ignoreip": "10.1.2.3/8"})
    c = jail_settings("j", {"bantime.formula": "ban.Time * 3"})
    assert a == b
    assert a != c
    assert hash(a.ignoreip) == hash(b.ignoreip)


def test_bad_jail_name() -> None:
    with pytest.raises(ConfigError, match="invalid jail name"):
        JailSettings("")


def test_tracker_caps_are_jail_options() -> None:
    from banish.config.values import jail_settings
    from banish.core.jail import Jail

    default = jail_settings("j", {})
    assert (default.maxtracked, default.maxmatchchars) == (1_000_000, 32 << 20)
    small = jail_settings("j", {"maxtracked": "3", "maxmatchchars": "1k"})
    assert (small.maxtracked, small.maxmatchchars) == (3, 1024)
    jail = Jail(small)
    assert jail.tracker.max_tracked == 3 and jail.tracker.max_match_chars == 1024
    with pytest.raises(ConfigError, match="maxmatchchars"):
        jail_settings("j", {"maxmatchchars": "lots"})
    with pytest.raises(ConfigError, match="maxtracked"):
        jail_settings("j", {"maxtracked": "0"})
