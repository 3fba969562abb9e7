"""Compile fail2ban's regex dialect (``<HOST>``, ``<F-USER>...</F-USER>`` ...) into Python ``re``.

Owns the meaning of every tag a failregex may contain and the group names the matcher reads
back (``ip4``, ``ip6``, ``dns``, ``fid``, ``user``, ``mlfid`` ...), including where an address
capture may end (never inside a host name: see ``_ends``). Knows nothing about lines, dates or
buffers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
IPV6 = r"(?:[0-9a-fA-F]{1,4}:{1,2}|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)"
_CIDR_GROUP = r"(?P<cidr>\d+)"

# Where an address or host name capture may end. A capture that runs straight on into a host
# name character is not an address: "from 198.51.100.77.evil.example" (sshd with UseDNS and a
# PTR record the client's owner wrote) names the host 198.51.100.77.evil.example, and taking
# 198.51.100.77 out of it -- which a lazy tail after the tag lets a regex do, e.g. fail2ban's
# sshd "(?:(?! from ).)*$" -- bans an innocent address. So an address must not be followed by
# [\w-] or by "." + a word character; a sentence dot, ":port", "]", "," and "/" still end it.
# IPv6 must not stop inside a longer colon-hex run that turns into a name either
# ("2001:db8::9:0.evil"); ":port" after it stays fine. A DNS capture ends the same way, so it
# cannot stop at the address inside a name either.


def _ends(dash: bool, dot: bool) -> tuple[str, str]:
    """The lookaheads that end an address (and a name) and an IPv6 address. ``dash``/``dot``:
    the regex itself goes on with a literal "-"/"." (fail2ban's sshd "Remote: <HOST>-\\d+"):
    the filter has said what follows the host, so that character may follow."""
    word = r"\w" if dash else r"[\w-]"
    v6_word = r"[g-zG-Z_]" if dash else r"[g-zG-Z_-]"
    dot_word = "" if dot else r"|\.\w"
    return (f"(?!{word}{dot_word})",
            f"(?!{word}{dot_word}|:[0-9a-fA-F:]*(?:{v6_word}{dot_word}))")


def _host_tags(dash: bool, dot: bool) -> dict[str, str]:
    end, end6 = _ends(dash, dot)
    ip4 = rf"(?:::f{{4,6}}:)?(?P<ip4>{IPV4}){end}"  # IPv4, also as IPv4-mapped IPv6
    ip6 = rf"(?P<ip6>{IPV6}){end6}"
    addr = rf"\[?(?:{ip4}|{ip6})\]?"
    dns = rf"(?P<dns>[\w\-.^_]*\w){end}"
    return {"IP4": ip4, "IP6": ip6, "ADDR": addr, "DNS": dns, "HOST": rf"(?:{addr}|{dns})",
            "SUBNET": rf"\[?(?:{ip4}|{ip6})(?:/{_CIDR_GROUP})?\]?"}


_HOST_TAGS = {(dash, dot): _host_tags(dash, dot) for dash in (False, True) for dot in (False, True)}
# the tags above, and their capturing spellings (<F-IP4/> ...; there is no <F-HOST/>)
_ADDRESS_TAGS = {**{n: n for n in _HOST_TAGS[False, False]},
                 **{f"F-{n}/": n for n in _HOST_TAGS[False, False] if n != "HOST"}}

_SIMPLE_TAGS = {
    "CIDR": _CIDR_GROUP,
    "F-CIDR/": _CIDR_GROUP,
    "F-ID/": r"(?P<fid>\S+)",
    "F-PORT/": r"(?P<fport>\w+)",
}

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
        host_tag = _ADDRESS_TAGS.get(name)
        if host_tag is not None:
            rest = m.string[m.end():m.end() + 2]
            tags = _HOST_TAGS[rest.startswith(("-", "\\-")), rest == "\\."]
            return tags["ADDR" if host_tag == "HOST" and usedns == "no" else host_tag]
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
