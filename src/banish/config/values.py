"""Parsing of single option values: durations, booleans, counts, address lists, formulas.

Every parser takes the option's text and the option's name, and either returns a typed value
or raises ``ConfigError`` naming the option and quoting the value, so a bad config fails at
load with one line instead of misbehaving at the first attack. Durations accept everything
fail2ban's ``MyTime.str2seconds`` documents (``600``, ``10m``, ``1h 30m``, ``1d12h``,
``2 weeks``, ``1 year - 6 mo``, ``2*.5y``) through a small arithmetic parser of our own;
nothing is ever passed to ``eval``.

Owns: the text -> value rules for jail options, and ``jail_settings`` (options -> JailSettings).
Must not: read files, do DNS lookups, or know INI syntax (the reader hands over plain strings).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Final

from banish.config.model import (
    DEFAULT_BANTIME,
    DEFAULT_FINDTIME,
    DEFAULT_MAX_MATCH_CHARS,
    DEFAULT_MAX_TRACKED,
    DEFAULT_MAXRETRY,
    PERMANENT,
    BantimeIncrement,
    IgnoreIP,
    IPNetwork,
    JailSettings,
    LogPath,
    UseDns,
)
from banish.core.formula import Formula, FormulaError, compile_formula, evaluate_constant
from banish.errors import ConfigError

# --- durations -------------------------------------------------------------------------------

_DAY: Final = 24 * 60 * 60
_YEAR: Final = (365 * 3 + 366) * _DAY / 4  # 365.25 days, as fail2ban counts a year
_UNIT_NAMES: Final = (
    (("d", "dd", "da", "day", "days"), float(_DAY)),
    (("w", "ww", "we", "wee", "week", "weeks"), float(7 * _DAY)),
    (("mo", "mon", "month", "months"), _YEAR / 12),
    (("y", "yy", "ye", "yea", "year", "years"), _YEAR),
    (("s", "ss", "se", "sec", "second", "seconds"), 1.0),
    (("m", "mm", "mi", "min", "minute", "minutes"), 60.0),
    (("h", "hh", "ho", "hou", "hour", "hours"), 3600.0),
)
UNITS: Final[dict[str, float]] = {n: secs for names, secs in _UNIT_NAMES for n in names}
"""Unit spellings (case-insensitive) and their length in seconds; ``m`` is minutes, ``mo`` months."""

_TOKEN: Final = re.compile(r"(\s*)(?:(\d+\.?\d*|\.\d+)|([A-Za-z]+)|([-+*/()])|(\S))")
_MAX_DEPTH: Final = 32


class _DurationSyntax(ValueError):
    pass


def _tokens(text: str) -> list[str | float]:
    """Numbers become floats, units become ``*`` and their seconds, and two quantities side by
    side (``1h 30m``, ``1d12h``, ``2 3``) get the ``+`` that fail2ban's syntax implies."""
    out: list[str | float] = []
    prev_kind = ""  # "num", "unit", "op", ")"
    for m in _TOKEN.finditer(text):
        space, num, word, op, junk = m.groups()
        spaced = bool(space)
        if junk is not None:
            raise _DurationSyntax(f"unexpected {junk!r}")
        if num is not None:
            if prev_kind in ("unit", "num"):
                # "1h30m", "1h 30m", "2 3" add up; "1h.5" or "1 .5" is a typo, not a sum
                if not (num[0].isdigit() and (spaced or prev_kind == "unit")):
                    raise _DurationSyntax(f"unexpected {num!r}")
                out.append("+")
            out.append(float(num))
            prev_kind = "num"
        elif word is not None:
            secs = UNITS.get(word.lower())
            if secs is None:
                raise _DurationSyntax(f"unknown unit {word!r}")
            if not (prev_kind == "num" or spaced) or not out:
                raise _DurationSyntax(f"unit {word!r} must follow a number")
            out += ["*", secs]
            prev_kind = "unit"
        else:
            assert op is not None
            out.append(op)
            prev_kind = ")" if op == ")" else "op"
    if not out:
        raise _DurationSyntax("empty")
    return out


class _Arithmetic:
    """Recursive descent over + - * / ( ) with unary signs; precedence as in Python."""

    def __init__(self, tokens: list[str | float]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | float | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | float | None:
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self) -> float:
        value = self.expr(0)
        if self.peek() is not None:
            raise _DurationSyntax(f"unexpected {self.peek()!r}")
        return value

    def expr(self, depth: int) -> float:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth: int) -> float:
        value = self.unary(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.unary(depth)
            if op == "*":
                value *= rhs
            elif rhs == 0:
                raise _DurationSyntax("division by zero")
            else:
                value /= rhs
        return value

    def unary(self, depth: int) -> float:
        if self.peek() in ("+", "-"):
            sign = -1.0 if self.take() == "-" else 1.0
            return sign * self.unary(depth)
        return self.primary(depth)

    def primary(self, depth: int) -> float:
        tok = self.take()
        if isinstance(tok, float):
            return tok
        if tok == "(":
            if depth >= _MAX_DEPTH:
                raise _DurationSyntax("too deeply nested")
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise _DurationSyntax("missing ')'")
            return value
        raise _DurationSyntax("expected a number" if tok is None else f"unexpected {tok!r}")


def parse_duration(value: str, option: str = "duration") -> float:
    """Seconds in a duration written the way fail2ban accepts it (see module docstring)."""
    try:
        seconds = _Arithmetic(_tokens(value)).parse()
    except _DurationSyntax as e:
        raise ConfigError(f"invalid duration {value.strip()!r}: {e}", option=option) from None
    if not math.isfinite(seconds):
        raise ConfigError(f"invalid duration {value.strip()!r}: too large", option=option)
    return seconds


def parse_bantime(value: str, option: str = "bantime") -> float:
    """A ban duration: positive seconds, or ``-1`` (``PERMANENT``) for a ban that never ends."""
    seconds = parse_duration(value, option)
    if seconds == PERMANENT:
        return PERMANENT
    if seconds <= 0:
        raise ConfigError(
            f"invalid ban time {value.strip()!r}: must be positive or -1 (permanent)", option=option
        )
    return seconds


def parse_positive_duration(value: str, option: str) -> float:
    seconds = parse_duration(value, option)
    if seconds <= 0:
        raise ConfigError(f"invalid duration {value.strip()!r}: must be positive", option=option)
    return seconds


# --- scalars ---------------------------------------------------------------------------------

_TRUE: Final = frozenset({"1", "yes", "true", "on"})
_FALSE: Final = frozenset({"0", "no", "false", "off"})


def parse_bool(value: str, option: str) -> bool:
    """The spellings ConfigParser accepts; anything else is an error, not a silent False."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(
        f"invalid boolean {value.strip()!r} (use true/false, yes/no, on/off, 1/0)", option=option
    )


def parse_int(value: str, option: str, *, minimum: int | None = None) -> int:
    text = value.strip()
    if not re.fullmatch(r"[-+]?\d{1,18}", text):  # 18 digits: beyond any count or size
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ConfigError(f"invalid whole number {shown!r}", option=option)
    number = int(text)
    if minimum is not None and number < minimum:
        raise ConfigError(f"invalid value {text!r}: must be at least {minimum}", option=option)
    return number


_SIZE = re.compile(r"(\d+)\s*([kKmMgG]?)[bB]?")


def parse_size(value: str, option: str) -> int:
    """A size in bytes: ``33554432``, ``32M``, ``512k`` (binary units)."""
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise ConfigError(f"not a size: {value.strip()!r} (a number, optionally k, M or G)",
                          option=option)
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


FLEET_MODES: Final = ("off", "share", "receive", "both")


def parse_fleet_mode(value: str, option: str = "fleet") -> str:
    """``fleet``: share this jail's bans, receive the fleet's, both, or off."""
    mode = value.strip().lower()
    if mode not in FLEET_MODES:
        raise ConfigError(f"unknown fleet mode {value.strip()!r} (one of {', '.join(FLEET_MODES)})",
                          option=option)
    return mode


def parse_usedns(value: str, option: str = "usedns") -> UseDns:
    word = value.strip().lower()
    try:
        return UseDns(word)
    except ValueError:
        allowed = ", ".join(u.value for u in UseDns)
        raise ConfigError(
            f"invalid value {value.strip()!r} (one of {allowed})", option=option
        ) from None


BACKENDS: Final = frozenset({"auto", "pyinotify", "gamin", "polling", "systemd"})
_BACKEND: Final = re.compile(r"([A-Za-z]+)\s*(\[.*\])?", re.DOTALL)


def parse_backend(value: str, option: str = "backend") -> str:
    """A backend name from fail2ban's set, optionally with ``[options]``; kept as written."""
    text = value.strip()
    m = _BACKEND.fullmatch(text)
    if not m or m.group(1).lower() not in BACKENDS:
        allowed = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"unknown backend {text!r} (one of {allowed})", option=option)
    return text


def parse_logpath(value: str, option: str = "logpath") -> tuple[LogPath, ...]:
    """One path or glob per line; a trailing word ``tail`` or ``head`` says where to start."""
    paths: list[LogPath] = []
    for raw in value.splitlines():
        line = raw.strip()
        if not line:
            continue
        tail = False
        head, _, last = line.rpartition(" ")
        if head.strip() and last in ("tail", "head"):
            line, tail = head.strip(), last == "tail"
        paths.append(LogPath(line, tail))
    return tuple(paths)


# --- addresses -------------------------------------------------------------------------------

_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_SPLIT_WORDS: Final = re.compile(r"[\s,]+")


def _host_name(text: str) -> str | None:
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if all(label.isdigit() for label in labels):
        return None  # "300.1.2.3" is a mistyped address, not a name
    return name.lower()


def _unmap(net: IPNetwork) -> IPNetwork:
    """``::ffff:a.b.c.d/120`` is an IPv4 network in disguise; store it as one."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((int(mapped), net.prefixlen - 96))
    return net


def parse_network(entry: str, option: str = "ignoreip") -> IPNetwork | None:
    """An address or CIDR network (``10.0.0.0/8``, ``10.0.0.0/255.0.0.0``, ``[::1]``), or None
    when ``entry`` is not written as an address at all (it may be a host name)."""
    text = entry.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    addr, slash, prefix = text.partition("/")
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        if slash:
            raise ConfigError(
                f"invalid network {entry.strip()!r}: bad address", option=option
            ) from None
        return None
    if not slash:
        return _unmap(ipaddress.ip_network(ip))
    try:
        net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    except ValueError:
        raise ConfigError(
            f"invalid network {entry.strip()!r}: bad prefix {prefix!r}", option=option
        ) from None
    return _unmap(net)


def parse_ignoreip(value: str, option: str = "ignoreip") -> IgnoreIP:
    """Addresses, networks and host names separated by spaces, commas or newlines.

    Host bits of a network are dropped (``10.1.2.3/8`` is ``10.0.0.0/8``) as fail2ban does;
    duplicates are dropped; anything that is neither an address nor a host name is an error.
    """
    networks: dict[IPNetwork, None] = {}
    names: dict[str, None] = {}
    for word in _SPLIT_WORDS.split(value):
        if not word:
            continue
        net = parse_network(word, option)
        if net is not None:
            networks[net] = None
            continue
        name = _host_name(word)
        if name is None:
            raise ConfigError(f"invalid address, network or host name {word!r}", option=option)
        names[name] = None
    return IgnoreIP(tuple(networks), tuple(names))


# --- bantime.increment -----------------------------------------------------------------------


def parse_factor(value: str, option: str = "bantime.factor") -> float:
    """A number or a constant expression (jail.conf suggests ``2.0 / 2.885385``)."""
    try:
        return evaluate_constant(value)
    except FormulaError as e:
        raise ConfigError(f"invalid factor {value.strip()!r}: {e}", option=option) from None


def parse_formula(value: str, option: str = "bantime.formula") -> Formula:
    try:
        return compile_formula(value)
    except FormulaError as e:
        raise ConfigError(f"invalid formula {value.strip()!r}: {e}", option=option) from None


def parse_multipliers(value: str, option: str = "bantime.multipliers") -> tuple[float, ...]:
    result: list[float] = []
    for word in value.split():
        try:
            number = float(word)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise ConfigError(f"invalid multiplier {word!r} in {value.strip()!r}", option=option)
        result.append(number)
    return tuple(result)


# --- a whole jail ----------------------------------------------------------------------------

JAIL_OPTIONS: Final = frozenset(
    {
        "enabled", "filter", "logpath", "backend", "maxretry", "findtime", "bantime",
        "maxmatches", "ignoreip", "ignoreself", "ignorecommand", "usedns", "mode",
        "bantime.increment", "bantime.factor", "bantime.formula", "bantime.multipliers",
        "bantime.maxtime", "bantime.rndtime", "bantime.overalljails",
        "maxtracked", "maxmatchchars", "fleet", "fleetmaxretry",
    }
)  # fmt: skip
"""The options ``jail_settings`` understands; others (``action``, ``logencoding``...) are the
caller's business and are ignored here."""


def jail_settings(name: str, options: Mapping[str, str]) -> JailSettings:
    """Build a validated ``JailSettings`` from a jail section's (interpolated) option strings.

    An empty value counts as "not set", as in fail2ban (``bantime.rndtime =``). Errors name the
    jail as the section; the caller adds the file with ``ConfigError.located``.
    """
    try:
        return _build(name, {k: v for k, v in options.items() if k in JAIL_OPTIONS and v.strip()})
    except ConfigError as e:
        raise e.located(section=name) from None


def _build(name: str, opt: dict[str, str]) -> JailSettings:
    def get(key: str) -> str | None:
        return opt.get(key)

    maxretry = (
        parse_int(opt["maxretry"], "maxretry", minimum=1) if "maxretry" in opt else DEFAULT_MAXRETRY
    )
    increment = BantimeIncrement(
        increment=parse_bool(v, "bantime.increment") if (v := get("bantime.increment")) else False,
        factor=parse_factor(v) if (v := get("bantime.factor")) else 1.0,
        formula=parse_formula(v) if (v := get("bantime.formula")) else None,
        multipliers=parse_multipliers(v) if (v := get("bantime.multipliers")) else (),
        maxtime=parse_positive_duration(v, "bantime.maxtime")
        if (v := get("bantime.maxtime"))
        else None,
        rndtime=parse_duration(v, "bantime.rndtime") if (v := get("bantime.rndtime")) else None,
        overalljails=parse_bool(v, "bantime.overalljails")
        if (v := get("bantime.overalljails"))
        else False,
    )
    return JailSettings(
        name=name,
        enabled=parse_bool(v, "enabled") if (v := get("enabled")) else False,
        filter=(get("filter") or name).strip(),
        logpath=parse_logpath(v) if (v := get("logpath")) else (),
        backend=parse_backend(v) if (v := get("backend")) else "auto",
        maxretry=maxretry,
        findtime=parse_positive_duration(v, "findtime")
        if (v := get("findtime"))
        else DEFAULT_FINDTIME,
        bantime=parse_bantime(v) if (v := get("bantime")) else DEFAULT_BANTIME,
        maxmatches=parse_int(v, "maxmatches", minimum=0) if (v := get("maxmatches")) else None,
        ignoreip=parse_ignoreip(v) if (v := get("ignoreip")) else IgnoreIP(),
        ignoreself=parse_bool(v, "ignoreself") if (v := get("ignoreself")) else True,
        ignorecommand=(get("ignorecommand") or "").strip(),
        usedns=parse_usedns(v) if (v := get("usedns")) else UseDns.WARN,
        mode=(get("mode") or "normal").strip(),
        bantime_increment=increment,
        maxtracked=parse_int(v, "maxtracked", minimum=1) if (v := get("maxtracked"))
        else DEFAULT_MAX_TRACKED,
        maxmatchchars=parse_size(v, "maxmatchchars") if (v := get("maxmatchchars"))
        else DEFAULT_MAX_MATCH_CHARS,
        fleet=parse_fleet_mode(v) if (v := get("fleet")) else "off",
        fleetmaxretry=parse_int(v, "fleetmaxretry", minimum=1) if (v := get("fleetmaxretry"))
        else None,
    )
