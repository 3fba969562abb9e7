"""banish's native notification actions (``banish-mail[...]`` in ``action =``) -> typed config.

Owns which names are native notification actions (``NOTIFY_KINDS``), what each one's options
are, their defaults, and checking them once at load time, so that a typo'd option or a
``tls=startls`` is a config error naming the jail and ``action`` -- not a failed delivery at
3 a.m. Also the context an action applies to (event kinds, minimum ban time, repeat offenders,
jails, quiet hours) and its delivery policy (digest, rate limit, back-off, timeout).

Names all start with ``banish-`` so that none collides with a fail2ban action.d file
(fail2ban ships ``mail.conf``, ``apprise.conf``, ``smtp.py``...); an action.d file of the same
name still wins (``config/firewall.py`` checks the disk first), as with the native firewalls.

Must not read secret files (auth, HMAC key): they are read when a message is sent, so a
rotated password needs no reload and no secret is ever part of the config model, ``dump`` or a
log line. Must not run or send anything.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from ..errors import ConfigError
from .values import parse_bool, parse_duration, parse_int

NOTIFY_KINDS: Mapping[str, str] = MappingProxyType({
    "banish-mail": "mail", "banish-webhook": "webhook", "banish-apprise": "apprise",
    "banish-jsonlog": "jsonlog", "banish-exec": "exec",
})
"""Action name -> channel kind."""

EVENT_KINDS = ("ban", "unban", "restore", "fleet", "expire")
"""What ``on=`` may name: a ban decided here, a lifted ban, a ban re-applied at start, a ban
decided by another node of the fleet, a ban whose time ran out."""

# Options every native action takes (the context and the delivery policy).
_COMMON = frozenset({"name", "actname", "on", "minbantime", "repeat", "jails", "quiet",
                     "digest", "rate", "timeout", "retry", "retrymax", "maxage"})
_OPTIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "mail": frozenset({"to", "from", "host", "port", "tls", "authfile", "cafile", "verify",
                       "subject", "digestsubject", "body", "maxlines"}),
    "webhook": frozenset({"url", "headers", "secretfile", "secret", "signature", "batch",
                          "batchsize", "cafile", "verify"}),
    "apprise": frozenset({"urls", "title", "body"}),
    "jsonlog": frozenset({"path", "mode"}),
    "exec": frozenset({"cmd", "env"}),
})
_REQUIRED = {"mail": "to", "webhook": "url", "apprise": "urls", "jsonlog": "path", "exec": "cmd"}
# A flood guard by default for the channels that reach a person; a file or a webhook in batch
# mode takes a wave as it comes.
_DEFAULT_RATE: Mapping[str, tuple[int, float] | None] = MappingProxyType({
    "mail": (10, 60.0), "apprise": (10, 60.0), "exec": (60, 60.0), "webhook": None,
    "jsonlog": None})
_QUIET = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_RATE = re.compile(r"\s*(\d+)\s*/\s*(.+)")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


@dataclass(frozen=True, slots=True)
class NotifyContext:
    """Which events an action tells about. Empty ``jails``: every jail the action is in."""

    kinds: frozenset[str] = frozenset({"ban"})
    minbantime: float = 0.0
    """Bans shorter than this are not told (a permanent ban always passes)."""
    repeat: int = 1
    """The ban count a ban needs (2: repeat offenders only)."""
    jails: frozenset[str] = frozenset()
    quiet: tuple[int, int] | None = None
    """Quiet hours as minutes of the (local) day [start, end): sends wait and become a digest."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """How an action's outbox is sent: per event or as a digest, how often, how persistently."""

    digest: float = 0.0
    """Seconds an item may wait to be sent in a digest; 0: one message per event."""
    rate: tuple[int, float] | None = None
    """At most ``count`` messages per ``period`` seconds; the rest wait for one digest."""
    timeout: float = 10.0
    retry: float = 1.0
    """The first back-off after a failed send; it doubles up to ``retrymax``."""
    retrymax: float = 300.0
    maxage: float = 7 * 86400.0
    """Items still unsent after this long are dropped (logged): a receiver gone for good must
    not grow the store without end."""


@dataclass(frozen=True, slots=True)
class NotifyAction:
    """One native notification action as a jail configured it.

    ``options`` are the channel's own options, checked (secrets only as file names, except a
    literal webhook ``secret``, which is kept out of ``repr``). Two jails configuring equal
    actions (same ``name``, ``kind``, options, context and delivery) share one outbox.
    """

    kind: str
    name: str
    jail: str
    options: Mapping[str, str] = field(repr=False)
    context: NotifyContext = NotifyContext()
    delivery: Delivery = Delivery()

    def same_action(self, other: NotifyAction) -> bool:
        return (self.kind, self.name, dict(self.options), self.context, self.delivery) == (
            other.kind, other.name, dict(other.options), other.context, other.delivery)


def is_notify_action(name: str) -> bool:
    return name in NOTIFY_KINDS


def compile_notify(name: str, args: Mapping[str, str], jail: str) -> NotifyAction:
    """``banish-KIND[args]`` of ``jail`` -> NotifyAction; ConfigError names the option."""
    kind = NOTIFY_KINDS[name]
    unknown = sorted(set(args) - _COMMON - _OPTIONS[kind])
    if unknown:
        raise ConfigError(f"{name}: unknown option {unknown[0]!r} (known: "
                          f"{', '.join(sorted(_COMMON | _OPTIONS[kind]))})", option="action")
    if not (args.get(_REQUIRED[kind]) or "").strip():
        raise ConfigError(f"{name} needs {_REQUIRED[kind]}=...", option="action")
    try:
        options = _CHECKS[kind]({k: v.strip() for k, v in args.items() if k not in _COMMON})
        context = _context(args)
        delivery = _delivery(kind, args)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc.reason}", option="action") from None
    actname = (args.get("actname") or args.get("name") or name).strip()
    if not re.fullmatch(r"[\w\-.@]+", actname):
        raise ConfigError(f"{name}: bad name {actname!r}", option="action")
    return NotifyAction(kind=kind, name=actname, jail=jail,
                        options=MappingProxyType(options), context=context, delivery=delivery)


def _context(args: Mapping[str, str]) -> NotifyContext:
    kinds = frozenset((args.get("on") or "ban").replace(",", " ").lower().split())
    bad = sorted(kinds - set(EVENT_KINDS))
    if bad or not kinds:
        raise ConfigError(f"on: unknown event kind {bad[0] if bad else ''!r} "
                          f"(any of {', '.join(EVENT_KINDS)})")
    repeat_text = (args.get("repeat") or "").strip().lower()
    if not repeat_text:
        repeat = 1
    elif repeat_text.isdigit():
        repeat = max(1, int(repeat_text))
    else:
        repeat = 2 if parse_bool(repeat_text, "repeat") else 1
    minbantime = parse_duration(args["minbantime"], "minbantime") if args.get("minbantime") else 0
    jails = frozenset((args.get("jails") or "").replace(",", " ").split())
    quiet = None
    if (args.get("quiet") or "").strip():
        m = _QUIET.fullmatch(args["quiet"].strip())
        if not m or int(m[1]) > 23 or int(m[3]) > 23 or int(m[2]) > 59 or int(m[4]) > 59:
            raise ConfigError(f"quiet: expected HH:MM-HH:MM, not {args['quiet']!r}")
        quiet = (int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4]))
    return NotifyContext(kinds=kinds, minbantime=minbantime, repeat=repeat, jails=jails,
                         quiet=quiet)


def _positive(args: Mapping[str, str], option: str, default: float) -> float:
    if not (args.get(option) or "").strip():
        return default
    value = parse_duration(args[option], option)
    if value <= 0:
        raise ConfigError(f"{option} must be positive, not {args[option]!r}")
    return value


def _delivery(kind: str, args: Mapping[str, str]) -> Delivery:
    digest = 0.0
    if (args.get("digest") or "").strip().lower() not in ("", "0", "no", "off"):
        digest = _positive(args, "digest", 0.0)
    rate = _DEFAULT_RATE[kind]
    text = (args.get("rate") or "").strip().lower()
    if text in ("0", "no", "off", "none"):
        rate = None
    elif text:
        m = _RATE.fullmatch(text)
        if not m or int(m[1]) < 1:
            raise ConfigError(f"rate: expected COUNT/PERIOD (10/1m), not {args['rate']!r}")
        period = parse_duration(m[2], "rate")
        if period <= 0:
            raise ConfigError(f"rate: the period must be positive, not {m[2]!r}")
        rate = (int(m[1]), period)
    retry = _positive(args, "retry", 1.0)
    return Delivery(digest=digest, rate=rate, timeout=_positive(args, "timeout", 10.0),
                    retry=retry, retrymax=max(retry, _positive(args, "retrymax", 300.0)),
                    maxage=_positive(args, "maxage", 7 * 86400.0))


def _no_newline(opts: Mapping[str, str], *names: str) -> None:
    for name in names:
        if any(c in opts.get(name, "") for c in "\r\n\0"):
            raise ConfigError(f"{name} must be one line")


def _mail(opts: dict[str, str]) -> dict[str, str]:
    _no_newline(opts, "to", "from", "host", "subject", "digestsubject")
    rcpts = [a.strip() for a in opts["to"].split(",") if a.strip()]
    if not rcpts or any("@" not in a or any(c in a for c in " <>\"") for a in rcpts):
        raise ConfigError(f"to: expected addresses like root@example.org, not {opts['to']!r}")
    opts["to"] = ",".join(rcpts)
    opts.setdefault("from", f"banish@{socket.gethostname()}")
    host = opts.setdefault("host", "localhost")
    tls = opts.setdefault("tls", "none" if _loopback(host) else "starttls").lower()
    if tls not in ("none", "starttls", "ssl"):
        raise ConfigError(f"tls: none, starttls or ssl, not {tls!r}")
    opts["tls"] = tls
    opts.setdefault("port", {"none": "25", "starttls": "587", "ssl": "465"}[tls])
    parse_int(opts["port"], "port", minimum=1)
    opts["verify"] = "yes" if parse_bool(opts.get("verify", "yes"), "verify") else "no"
    parse_int(opts.setdefault("maxlines", "1000"), "maxlines", minimum=1)
    return opts


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _webhook(opts: dict[str, str]) -> dict[str, str]:
    url = urlsplit(opts["url"])
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"url: expected http:// or https://, not {opts['url']!r}")
    _no_newline(opts, "url", "signature")
    for line in filter(None, (h.strip() for h in opts.get("headers", "").split("|"))):
        name, colon, _ = line.partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name.strip()):
            # The line is not echoed: a header's value is often a token.
            raise ConfigError(f"headers: expected 'Name: value | Name2: value' (header "
                              f"{name.strip()[:40]!r})")
    if "secret" in opts and "secretfile" in opts:
        raise ConfigError("give secret or secretfile, not both")
    if not _HEADER_NAME.fullmatch(opts.setdefault("signature", "X-Banish-Signature")):
        raise ConfigError(f"signature: not a header name: {opts['signature']!r}")
    opts["batch"] = "yes" if parse_bool(opts.get("batch", "no"), "batch") else "no"
    parse_int(opts.setdefault("batchsize", "500"), "batchsize", minimum=1)
    opts["verify"] = "yes" if parse_bool(opts.get("verify", "yes"), "verify") else "no"
    return opts


def _apprise(opts: dict[str, str]) -> dict[str, str]:
    if importlib.util.find_spec("apprise") is None:
        raise ConfigError("needs the apprise package (pip install 'banish[apprise]')")
    opts["urls"] = " ".join(opts["urls"].replace(",", " ").split())
    for url in opts["urls"].split():
        if "://" not in url:
            raise ConfigError(f"urls: {url!r} is not an apprise URL (scheme://...)")
    return opts


def _jsonlog(opts: dict[str, str]) -> dict[str, str]:
    if not opts["path"].startswith("/"):
        raise ConfigError(f"path must be absolute, not {opts['path']!r}")
    mode = opts.setdefault("mode", "0640")
    if not re.fullmatch(r"0?[0-7]{3}", mode):
        raise ConfigError(f"mode: an octal file mode like 0640, not {mode!r}")
    return opts


def _exec(opts: dict[str, str]) -> dict[str, str]:
    # Split here, on the configured text only: a tag's value later fills one element and can
    # never become two, or a shell word.
    try:
        argv = shlex.split(opts["cmd"])
    except ValueError as exc:
        raise ConfigError(f"cmd: {exc}") from None
    if not argv or not argv[0].startswith("/"):
        raise ConfigError(f"cmd: the program must be an absolute path, not {opts['cmd']!r}")
    if "<" in argv[0]:
        raise ConfigError("cmd: the program itself cannot be a tag")
    opts["env"] = "yes" if parse_bool(opts.get("env", "no"), "env") else "no"
    return opts


_CHECKS = {"mail": _mail, "webhook": _webhook, "apprise": _apprise, "jsonlog": _jsonlog,
           "exec": _exec}
