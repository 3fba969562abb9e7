"""Compile fail2ban's regex dialect (``<HOST>``, ``<F-USER>...</F-USER>`` ...) into Python ``re``.

Owns the meaning of every tag a failregex may contain and the group names the matcher reads
back (``ip4``, ``ip6``, ``dns``, ``fid``, ``user``, ``mlfid`` ...). Knows nothing about lines,
dates or buffers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
IPV6 = r"(?:[0-9a-fA-F]{1,4}:{1,2}|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)"

_IP4_GROUP = rf"(?:::f{{4,6}}:)?(?P<ip4>{IPV4})"  # IPv4, also written as IPv4-mapped IPv6
_IP6_GROUP = rf"(?P<ip6>{IPV6})"
_DNS_GROUP = r"(?P<dns>[\w\-.^_]*\w)"
_CIDR_GROUP = r"(?P<cidr>\d+)"
_ADDR = rf"\[?(?:{_IP4_GROUP}|{_IP6_GROUP})\]?"
_HOST = rf"(?:{_ADDR}|{_DNS_GROUP})"
_SUBNET = rf"\[?(?:{_IP4_GROUP}|{_IP6_GROUP})(?:/{_CIDR_GROUP})?\]?"

_SIMPLE_TAGS = {
    "IP4": _IP4_GROUP,
    "IP6": _IP6_GROUP,
    "ADDR": _ADDR,
    "CIDR": _CIDR_GROUP,
    "SUBNET": _SUBNET,
    "DNS": _DNS_GROUP,
    "F-ID/": r"(?P<fid>\S+)",
    "F-PORT/": r"(?P<fport>\w+)",
}
for _name in ("IP4", "IP6", "ADDR", "CIDR", "SUBNET", "DNS"):
    _SIMPLE_TAGS[f"F-{_name}/"] = _SIMPLE_TAGS[_name]

_TAG = re.compile(r"</?[\w\-]+/?>")
_CAPTURE = re.compile(r"^(/?)F-([A-Z0-9_\-]+)$")
_SHORT_NAMES = {"id": "fid", "port": "fport"}
# Python >= 3.11 refuses a global flag like "(?i)" inside a group; fail2ban filters write
# "((?i)...)" or "(?:(?i)...)", which mean a scoped flag: rewrite to "(?i:...)".
_INLINE_FLAG = re.compile(r"(?<!\\)\((?:\?:)?(\(\?[a-z]+)\)")
_COMPOUND = re.compile(r"^(alt_|tuple_)(.*?)(?:_\d+)?$")

# Groups that identify the offender, in the order the matcher prefers them.
ID_GROUPS = ("fid", "ip4", "ip6", "dns")


def group_name(tag: str) -> str:
    low = tag.lower()
    return _SHORT_NAMES.get(low, low)


def expand_tags(regex: str, *, usedns: str = "yes") -> str:
    """Replace banish/fail2ban tags by Python regex syntax; unknown ``<...>`` text stays as is."""
    opened: set[str] = set()
    skiplines = 0

    def replace(m: re.Match[str]) -> str:
        nonlocal skiplines
        tag = m.group()
        name = tag[1:-1]
        if name == "HOST":
            return _ADDR if usedns == "no" else _HOST
        if name == "SKIPLINES":
            skiplines += 1
            return rf"\n(?P<skiplines{skiplines - 1}>(?:(?:.*\n)*?))"
        simple = _SIMPLE_TAGS.get(name)
        if simple is not None:
            return simple
        cap = _CAPTURE.match(name)
        if cap is None:
            return tag
        closing, capname = cap.groups()
        if closing:
            return ")" if capname in opened else tag
        opened.add(capname)
        return f"(?P<{group_name(capname)}>"

    return _INLINE_FLAG.sub(r"\1:", _TAG.sub(replace, regex))


def mandatory_groups(pattern: re.Pattern[str]) -> frozenset[str]:
    """Named groups that take part in every match (not inside an optional or a branch)."""
    import importlib

    parser = importlib.import_module("re._parser")
    consts = importlib.import_module("re._constants")
    names = {index: name for name, index in pattern.groupindex.items()}
    found: set[str] = set()

    def walk(items: object) -> None:
        for op, av in items:  # type: ignore[attr-defined]
            if op is consts.SUBPATTERN:
                if av[0] in names:
                    found.add(names[av[0]])
                walk(av[3])
            elif op in (consts.MAX_REPEAT, consts.MIN_REPEAT) and av[0] >= 1:
                walk(av[2])

    try:
        walk(parser.parse(pattern.pattern, pattern.flags))
    except Exception:
        return frozenset()
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class CompiledRegex:
    """One compiled failregex/ignoreregex/prefregex and what its groups mean."""

    source: str
    pattern: re.Pattern[str]
    alt_groups: tuple[tuple[str, str], ...] = ()
    tuple_groups: tuple[tuple[str, str], ...] = ()
    skiplines: int = 0
    session_only: bool = False
    """Every match is NOFAIL or GAINED and FORGETs its multi-line session: such a match
    changes nothing unless that session is already open, so it can be skipped then."""

    @property
    def has_id(self) -> bool:
        groups = self.pattern.groupindex
        return any(g in groups for g in (*ID_GROUPS, "mlfid"))

    def groups(self, m: re.Match[str]) -> dict[str, object]:
        """The match's named groups, with ``alt_``/``tuple_`` groups folded in as fail2ban does."""
        found: dict[str, object] = dict(m.groupdict())
        for group, name in self.alt_groups:
            value = found.get(group)
            if value and not found.get(name):
                found[name] = value
        for group, name in self.tuple_groups:
            current = found.get(name)
            value = found.get(group)
            found[name] = (*current, value) if isinstance(current, tuple) else (current, value)
        return found


def compile_regex(regex: str, *, option: str, usedns: str = "yes",
                  multiline: bool = False) -> CompiledRegex:
    """Compile one regex line of a filter; errors name the option and the reason."""
    expanded = expand_tags(regex, usedns=usedns)
    if not expanded.strip():
        raise ConfigError("empty regex", option=option)
    try:
        pattern = re.compile(expanded, re.MULTILINE if multiline else 0)
    except re.error as exc:
        raise ConfigError(f"invalid regex {regex!r}: {exc}", option=option) from None
    alt: list[tuple[str, str]] = []
    tup: list[tuple[str, str]] = []
    for group in pattern.groupindex:
        m = _COMPOUND.match(group)
        if m and len(group) > 4:
            (alt if m.group(1) == "alt_" else tup).append((group, group_name(m.group(2))))
    skip = sum(1 for g in pattern.groupindex if g.startswith("skiplines"))
    must = mandatory_groups(pattern) if "mlfforget" in pattern.groupindex else frozenset()
    session_only = "mlfforget" in must and bool({"nofail", "mlfgained"} & must)
    return CompiledRegex(regex, pattern, tuple(sorted(alt)), tuple(sorted(tup)), skip,
                         session_only)
