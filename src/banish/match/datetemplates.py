"""Date templates: fail2ban-style date patterns compiled into regexes, and the default set.

Owns: the ``%``-directive language of ``datepattern`` (strptime fields plus fail2ban's ``%Ex*``
extensions, ``%k``/``%l``), the boundary rules fail2ban applies around a date (``{^LN-BEG}``,
``{UNB}``, ``**``, word boundaries), the special templates ``EPOCH``/``LEPOCH``/``TAI64N``/
``{NONE}``, and the ordered list of default templates. It must not hold per-line state (that is
the detector's job in :mod:`banish.match.dates`) nor turn fields into time
(:mod:`banish.match.datefields`).

A template is immutable and cached per pattern text, so every detector of a process shares the
compiled regexes.

Group 1 of every template regex spans the text that the filter cuts out of the line. It is the
whole date unless the pattern brings its own capturing group (``^[^\\[]*\\[({DATE})``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final, Literal

from banish.match.datefields import FieldPlan

__all__ = [
    "DEFAULT_SPECS",
    "EPOCH",
    "LONG_EPOCH",
    "PATTERN",
    "TAI64N",
    "Template",
    "TemplateError",
    "anchored_defaults",
    "date_templates",
    "default_templates",
    "line_traits",
    "none_template",
    "spec_key",
    "template_for",
]

PATTERN: Final = 0
EPOCH: Final = 1
LONG_EPOCH: Final = 2
TAI64N: Final = 3

_LINE_START = r"^(?:\W{0,2})?"  # a date "at line begin" may follow up to two non-word chars
_WORD_START = r"(?=^|\b|\W)"
_WORD_END = r"(?=\b|\W|$)"
_LN_BEG = "{^LN-BEG}"
_UNB = "{UNB}"

# Regex for each directive. Alternatives keep fail2ban's order: with backtracking the first
# alternative that lets the whole template match decides which digits a field takes.
_NAMES_OF_WEEKDAYS = "wednesday|thursday|saturday|tuesday|monday|friday|sunday"
_NAMES_OF_MONTHS = (
    "september|february|november|december|january|october|august|march|april|june|july|may"
)
_WEEKDAYS = "mon|tue|wed|thu|fri|sat|sun"
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_ZONE_ABBR = r"[A-Z](?:[A-Z]{2,4})?"
_ZONE_OFFSET = r"[+-][01]\d(?::?\d{2})?"
_DIRECTIVES: Final[dict[str, str]] = {
    "%": "%",
    "a": f"(?P<a>{_WEEKDAYS})",
    "A": f"(?P<A>{_NAMES_OF_WEEKDAYS})",
    "b": f"(?P<b>{_MONTHS})",
    "B": f"(?P<B>{_NAMES_OF_MONTHS})",
    "d": r"(?P<d>[12]\d|[0 ]?[1-9]|3[01])",
    "m": r"(?P<m>0?[1-9]|1[0-2])",
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d\d)",
    "H": r"(?P<H>[01]?\d|2[0-3])",
    "k": r" ?(?P<H>[0-2]?\d)",
    "I": r"(?P<I>1[0-2]|0[1-9]|[1-9])",
    "l": r" ?(?P<I>1?\d)",
    "M": r"(?P<M>[0-5]?\d)",
    "S": r"(?P<S>[0-5]?\d|6[01])",
    "f": r"(?P<f>[0-9]{1,6})",
    "p": r"(?P<p>am|pm)",
    "z": rf"(?P<z>Z|UTC|GMT|{_ZONE_OFFSET})",
    "Z": r"(?P<Z>Z|[A-Z]{3,5})",
    "j": r"(?P<j>36[0-6]|3[0-5]\d|[12]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])",
    "U": r"(?P<U>5[0-3]|[0-4]\d|\d)",
    "W": r"(?P<W>5[0-3]|[0-4]\d|\d)",
    "V": r"(?P<V>5[0-3]|0[1-9]|[1-4]\d|\d)",
    "G": r"(?P<G>\d\d\d\d)",
    "u": r"(?P<u>[1-7])",
    "w": r"(?P<w>[0-6])",
    "c": (
        rf"(?P<a>{_WEEKDAYS})\s+(?P<b>{_MONTHS})\s+(?P<d>3[01]|[12]\d|0[1-9]|[1-9]| [1-9])\s+"
        r"(?P<H>2[0-3]|[01]\d|\d):(?P<M>[0-5]\d|\d):(?P<S>6[01]|[0-5]\d|\d)\s+(?P<Y>\d\d\d\d)"
    ),
    "x": r"(?P<m>1[0-2]|0[1-9]|[1-9])/(?P<d>3[01]|[12]\d|0[1-9]|[1-9]| [1-9])/(?P<y>\d\d)",
    "X": r"(?P<H>2[0-3]|[01]\d|\d):(?P<M>[0-5]\d|\d):(?P<S>6[01]|[0-5]\d|\d)",
    # fail2ban's exact-width extensions
    "Exd": r"(?P<d>[12]\d|0[1-9]|3[01])",
    "Exm": r"(?P<m>0[1-9]|1[0-2])",
    "ExH": r"(?P<H>[01]\d|2[0-3])",
    "Exk": r" ?(?P<H>[01]?\d|2[0-3])",
    "Exl": r" ?(?P<I>1[0-2]|\d)",
    "ExM": r"(?P<M>[0-5]\d)",
    "ExS": r"(?P<S>[0-5]\d|6[01])",
    # fail2ban narrows this to the centuries from 2000 up to "now + 3 years" (2000-2029 until
    # 2026); a pure module cannot read the clock, so it accepts the whole 21st century.
    "ExY": r"(?P<Y>20\d\d)",
    "Exy": r"(?P<y>\d\d)",
    "ExZ": rf"(?P<Z>{_ZONE_ABBR})",
    "Exz": rf"(?P<z>(?:{_ZONE_ABBR})?{_ZONE_OFFSET}|{_ZONE_ABBR})",
}
_DIRECTIVE_AT = re.compile(r"%(%|Ex[ZzdmHklMSYy]|[aAbBdmYyHkIlMSfpzZjUWVGuwcxX])")
_FLAG_GROUP = re.compile(r"\(\?\w+\)")
_INLINE_FLAGS = re.compile(r"\(\?[a-z]+\)")
_EPOCH_FIELD = re.compile(r"(?<!\\)\{L?EPOCH\}", re.IGNORECASE)
_EPOCH_SHORT = r"\d{10,11}\b(?:\.\d{3,6})?"
_EPOCH_LONG = r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"

# Necessary conditions of the default dates, tested once per line and shared by all templates
# of a detector, so a line without, say, "h:mm:ss" never runs the costly unanchored searches.
NEED_CLOCK: Final = 1  # h:mm:ss (every %H/%k/%I:%M:%S)
NEED_MONTH: Final = 2  # an English month abbreviation (case-insensitive, as %b matches)
NEED_DATE_SEP: Final = 4  # digit, one of ./- , digit or space (numeric dates)
NEED_DIGITS: Final = 8  # six digits in a row (%y%m%d)
NEED_AT: Final = 16  # "@" (TAI64N)
NEED_DIGITS8: Final = 32  # eight digits in a row (%Y%m%d)
NEED_DIGITS10: Final = 64  # ten digits in a row (epoch seconds)
_NEED_REGEXES: Final[tuple[tuple[int, re.Pattern[str]], ...]] = (
    (NEED_CLOCK, re.compile(r"\d:\d\d?:\d")),
    (NEED_MONTH, re.compile(rf"(?iu){_MONTHS}")),
    (NEED_DATE_SEP, re.compile(r"\d[./-][\d ]")),
    (NEED_DIGITS, re.compile(r"\d{6}")),
    (NEED_AT, re.compile("@")),
    (NEED_DIGITS8, re.compile(r"\d{8}")),
    (NEED_DIGITS10, re.compile(r"\d{10}")),
)
_ZERO_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_MONTH_WORDS = tuple(_MONTHS.split("|"))


def line_traits(line: str) -> int:
    """The NEED_* bits that hold for ``line`` (month and separator only when a clock does).

    ASCII lines (nearly all) take a path of plain substring tests, several times faster than
    the equivalent regexes; other lines use the regexes, whose ``\\d`` and case folding cover
    non-ASCII digits and letters.
    """
    if not line.isascii():
        return sum(bit for bit, rx in _NEED_REGEXES if rx.search(line) is not None)
    z = line.encode("ascii").translate(_ZERO_DIGITS).decode("ascii")  # every digit -> "0"
    bits = NEED_AT if "@" in line else 0
    if "0:0:0" in z or "0:00:0" in z:
        bits |= NEED_CLOCK
    if "000000" in z:
        bits |= NEED_DIGITS
        if "00000000" in z:
            bits |= NEED_DIGITS8 | (NEED_DIGITS10 if "0000000000" in z else 0)
    if not bits & NEED_CLOCK:
        return bits  # month and separator matter only together with a clock (see _DEFAULTS)
    if any(sep in z for sep in ("0.0", "0-0", "0/0", "0. ", "0- ", "0/ ")):
        bits |= NEED_DATE_SEP
    low = line.lower()
    if any(word in low for word in _MONTH_WORDS):
        bits |= NEED_MONTH
    return bits


class TemplateError(ValueError):
    """A date pattern fail2ban would refuse (bad directive, bad regex)."""


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """One compiled date template.

    ``anchored`` templates are bound to the line begin or end; the detector trusts a match of
    such a template without comparing positions with the previous line. ``weight`` is fail2ban's
    preference (100 for the line-begin copies of the defaults) used when reordering.
    """

    name: str
    key: str
    regex: re.Pattern[str]
    anchored: bool
    line_begin: bool
    kind: int = PATTERN
    value_group: int = 1
    weight: float = 1.0
    plan: FieldPlan | None = None  # for PATTERN templates
    needs: int = 0  # NEED_* bits: cheap tests every match of this template passes


WordBegin = bool | Literal["start"]


def _skip_flag_group(rx: str, i: int) -> int:
    m = _FLAG_GROUP.match(rx, i)
    return m.end() if m else i


def _begins_unbounded(rx: str) -> bool:
    """True if the regex already says where it starts: ``^``, ``(^``, ``(?:^`` or ``**``."""
    opening = len(rx) - len(rx.lstrip("("))
    for k in range(opening, -1, -1):
        for j in {k, _skip_flag_group(rx, k)}:
            rest = rx[j:]
            if rest.startswith(("^", "(^", "(?:^")) or rest.lstrip("(").startswith("**"):
                return True
    return False


def _not_escaped(rx: str, i: int) -> bool:
    return rx[i - 1 : i] != "\\" if i > 0 else True


def _ends_unbounded(rx: str) -> bool:
    """True if the regex already says where it ends: ``$``, ``$)``, ``\\b``, ``\\s`` or ``**``."""
    n = len(rx)
    if rx.endswith("$") and _not_escaped(rx, n - 1):
        return True
    if rx.endswith(("$)", "\\b", "\\s")) and _not_escaped(rx, n - 2):
        return True
    core = rx.rstrip(")")
    return core.endswith("**") and _not_escaped(rx, len(core) - 2)


def _has_capturing_group(rx: str) -> bool:
    """Any unescaped ``(`` that is neither ``(?...`` nor the condition of ``(?(...)``."""
    for i, c in enumerate(rx):
        if (
            c == "("
            and rx[i + 1 : i + 2] != "?"
            and _not_escaped(rx, i)
            and rx[max(0, i - 2) : i] != "(?"
        ):
            return True
    return False


def _wrap_in_group(rx: str) -> str:
    """Group everything between a leading ``^`` (and inline flags) and a trailing ``$``."""
    j = _skip_flag_group(rx, 0)
    if rx.startswith("^", j):
        j += 1
    j = _skip_flag_group(rx, j)
    end = len(rx) - 1 if rx.endswith("$") and len(rx) > j else len(rx)
    return f"{rx[:j]}({rx[j:end]}){rx[end:]}"


def _starts_line(rx: str) -> bool:
    rest = rx[_skip_flag_group(rx, 0) :]
    if rest.startswith("^"):
        return True
    for head in ("(^", "(?:^"):
        if rest.startswith(head) and not rest.startswith("|", len(head)):
            return True
    return False


def _ends_line(rx: str) -> bool:
    for tail in ("$", "$)"):
        if rx.endswith(tail) and rx[-len(tail) - 1 : -len(tail)] not in ("\\", "|"):
            return True
    return False


def _drop_star_marks(rx: str) -> str:
    """Remove the ``**`` that switched off a word boundary at either end."""
    opening = len(rx) - len(rx.lstrip("("))
    for k in range(opening, -1, -1):
        j = _skip_flag_group(rx, k)
        j += len(rx) - j - len(rx[j:].lstrip("("))
        if rx.startswith("**", j):
            rx = rx[:j] + rx[j + 2 :]
            break
    core = rx.rstrip(")")
    if core.endswith("**") and _not_escaped(rx, len(core) - 2):
        rx = core[:-2] + rx[len(core) :]
    return rx


def _shape(rx: str, word_begin: WordBegin, word_end: bool) -> tuple[str, bool, bool, bool]:
    """Add fail2ban's boundaries and group to a date regex.

    Returns (regex, anchored, line_begin, start_bound_added).
    """
    rx = rx.strip()
    flags = _INLINE_FLAGS.search(rx)
    if flags:  # inline flags must lead the final regex
        rx = rx[: flags.start()] + rx[flags.end() :]
    bound_begin = bool(word_begin) and not _begins_unbounded(rx)
    bound_end = word_end and not _ends_unbounded(rx)
    if not _has_capturing_group(rx):
        rx = _wrap_in_group(rx)
    line_begin = False
    if bound_begin:
        if word_begin == "start":
            rx = _LINE_START + rx
            line_begin = True
        else:
            rx = _WORD_START + rx
    if bound_end:
        rx += _WORD_END
    line_begin = line_begin or _starts_line(rx)
    anchored = line_begin or _ends_line(rx)
    rx = _drop_star_marks(rx)
    if flags:
        rx = flags.group() + rx
    return rx, anchored, line_begin, bound_begin and word_begin == "start"


def _compile(rx: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(rx)
    except (re.error, OverflowError, RecursionError) as e:
        raise TemplateError(f"invalid date pattern {what!r}: {e}") from None


def _translate(pattern: str) -> str:
    """Replace ``%`` directives by their regexes; a ``%`` that starts none is an error."""
    out: list[str] = []
    pos = 0
    while True:
        i = pattern.find("%", pos)
        if i < 0:
            out.append(pattern[pos:])
            return "".join(out)
        m = _DIRECTIVE_AT.match(pattern, i)
        if m is None:
            raise TemplateError(
                f"invalid date pattern {pattern!r}: unknown directive {pattern[i : i + 3]!r}"
                " (write %% for a literal percent sign)"
            )
        out.append(pattern[pos:i])
        out.append(_DIRECTIVES[m.group(1)])
        pos = m.end()


def _has_name_field(pattern: str) -> bool:
    """Month/day names and AM/PM make fail2ban match the whole template case-insensitively."""
    for i in range(len(pattern) - 1):
        if pattern[i] == "%" and pattern[i + 1] in "aAbBpc" and pattern[i - 1 : i] != "%":
            return True
    return False


def _pattern_template(pattern: str, key: str, weight: float) -> Template:
    word_begin: WordBegin = True
    word_end = True
    if pattern.startswith(_UNB):
        pattern = pattern[len(_UNB) :]
        word_begin = word_end = False
    if word_begin and pattern.startswith(_LN_BEG):
        pattern = pattern[len(_LN_BEG) :]
        word_begin = "start"
    rx = _translate(pattern)
    if _has_name_field(pattern):
        rx = "(?iu)" + rx
    rx, anchored, line_begin, prefixed = _shape(rx, word_begin, word_end)
    name = _LN_BEG + pattern if prefixed else pattern
    regex = _compile(rx, key)
    return Template(name, key, regex, anchored, line_begin, PATTERN, 1, weight, FieldPlan.of(regex))


def _epoch_template(key: str, *, line_begin_only: bool, long: bool, weight: float) -> Template:
    value = _EPOCH_LONG if long else _EPOCH_SHORT
    kind = LONG_EPOCH if long else EPOCH
    name = "LongEpoch" if long else "Epoch"
    if line_begin_only:
        rx, anchored, line_begin, _ = _shape(f"({value})", "start", True)
        name = _LN_BEG + name
    else:
        # at line begin, right after a leading "[" (nsd), or inside SELinux "audit(...)"
        rx = rf"((?:^|(?<=^\[)|(?<=\baudit\()){value})"
        rx, anchored, line_begin, _ = _shape(rx, False, True)
    return Template(name, key, _compile(rx, key), anchored, line_begin, kind, 1, weight)


def _epoch_in_pattern(pattern: str, key: str, weight: float) -> Template:
    long = "LEPOCH" in key
    value = _EPOCH_LONG if long else _EPOCH_SHORT
    rx = "(" + _EPOCH_FIELD.sub(lambda _m: f"({value})", pattern) + ")"
    rx, anchored, line_begin, _ = _shape(rx, True, True)
    kind = LONG_EPOCH if long else EPOCH
    return Template(pattern, key, _compile(rx, key), anchored, line_begin, kind, 2, weight)


def _tai64n_template(key: str, *, line_begin_only: bool, weight: float) -> Template:
    rx, anchored, line_begin, prefixed = _shape(
        "@[0-9a-f]{24}", "start" if line_begin_only else False, True
    )
    name = _LN_BEG + "TAI64N" if prefixed else "TAI64N"
    return Template(name, key, _compile(rx, key), anchored, line_begin, TAI64N, 1, weight)


def spec_key(spec: str) -> str:
    """fail2ban's identity of a template spec: case matters only when it has ``%`` fields."""
    return spec if "%" in spec else spec.upper()


@lru_cache(maxsize=1024)
def template_for(spec: str, needs: int = 0) -> Template:
    """The template for one datepattern line that is not a ``{...}`` keyword line.

    ``needs`` are NEED_* bits the caller knows every match satisfies; the defaults bring their
    own. Raises TemplateError when fail2ban would refuse the pattern.
    """
    key = spec_key(spec)
    weight = 100.0 if key in _ANCHORED_DEFAULT_KEYS else 1.0
    needs |= _DEFAULT_NEEDS.get(key, 0)
    return replace(_template_for(spec, key, weight), needs=needs)


def _template_for(spec: str, key: str, weight: float) -> Template:
    if "EPOCH" in key:
        if _EPOCH_FIELD.search(spec):
            return _epoch_in_pattern(spec, key, weight)
        if key in ("EPOCH", "{^LN-BEG}EPOCH", "^EPOCH"):
            return _epoch_template(key, line_begin_only=key != "EPOCH", long=False, weight=weight)
        if key in ("LEPOCH", "{^LN-BEG}LEPOCH", "^LEPOCH"):
            return _epoch_template(key, line_begin_only=key != "LEPOCH", long=True, weight=weight)
    if key in ("TAI64N", "{^LN-BEG}TAI64N", "^TAI64N"):
        return _tai64n_template(key, line_begin_only=key != "TAI64N", weight=weight)
    return _pattern_template(spec, key, weight)


@lru_cache(maxsize=1)
def none_template() -> Template:
    """``{NONE}``: matches an empty date at the start of every line."""
    return _pattern_template(_UNB + "^", "{NONE}", 1.0)


# The default templates, in fail2ban's order. Specs are datepattern lines; "EPOCH" and
# "TAI64N" name the special templates. Examples are of the dates each one is meant for.
_CLOCK_DATE = NEED_CLOCK | NEED_DATE_SEP
_CLOCK_MONTH = NEED_CLOCK | NEED_MONTH
_DEFAULTS: Final[tuple[tuple[str, int], ...]] = (
    # 2024-03-05T07:08:09.123+01:00, 2024/03/05 07:08:09, 2024.03.05  7:08:09
    (r"%ExY(?P<_sep>[./-])%m(?P=_sep)%d(?:T| {1,2})%H:%M:%S(?:[,.]%f)?(?:\s*%z)?", _CLOCK_DATE),
    # Tue Mar  5 07:08:09.123 2024, Mar 5 07:08:09 (syslog, no year)
    (r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?", _CLOCK_MONTH),
    # Tue Mar 5 2024 07:08:09
    (r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?", _CLOCK_MONTH),
    # 05/03/2024 07:08:09, 05-03-24 07:08:09
    (r"%d(?P<_sep>[/-])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S", _CLOCK_DATE),
    # [05/Mar/2024:07:08:09 +0100], 05-Mar-2024 07:08:09.123
    (r"%d(?P<_sep>[/-])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?", _CLOCK_MONTH),
    # 03/05/2024:07:08:09
    (r"%m/%d/%ExY:%H:%M:%S", _CLOCK_DATE),
    # 03-05-2024 07:08:09.123
    (r"%m-%d-%ExY %k:%M:%S(?:\.%f)?", _CLOCK_DATE),
    # 1709618889, 1709618889.123
    ("EPOCH", NEED_DIGITS10),
    # 07:08:09 at line begin (date is today, or yesterday if that time is still to come)
    (r"{^LN-BEG}%H:%M:%S", NEED_CLOCK),
    # <03/05/24@07:08:09>
    (r"^<%m/%d/%Exy@%H:%M:%S>", _CLOCK_DATE),
    # 240305 07:08:09, 240305  7:08:09
    (r"%Exy%Exm%Exd {1,2}%H:%M:%S", NEED_CLOCK | NEED_DIGITS),
    # Mar 5, 2024 7:08:09 AM
    (r"%b %d, %ExY %I:%M:%S %p", _CLOCK_MONTH),
    # Mar-05-24 07:08:09 at line begin
    (r"^%b-%d-%Exy %k:%M:%S", _CLOCK_MONTH),
    # 20240305T070809, 20240305 070809.123Z
    (r"%ExY%Exm%Exd(?:T| {1,2})%ExH%ExM%ExS(?:[,.]%f)?(?:\s*%z)?", NEED_DIGITS8),
    # PST Mar 5 07:08:09
    (r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?", _CLOCK_MONTH),
    # +01:00 Mar 5 07:08:09
    (r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?", _CLOCK_MONTH),
    # @4000000065e6c1d90a1b2c3d
    ("TAI64N", NEED_AT),
)
DEFAULT_SPECS: Final[tuple[str, ...]] = tuple(spec for spec, _ in _DEFAULTS)


def _anchorable(spec: str) -> bool:
    return not spec.startswith((_LN_BEG, "^"))


_ANCHORED_DEFAULT_KEYS: Final[frozenset[str]] = frozenset(
    spec_key(_LN_BEG + s) for s in DEFAULT_SPECS if _anchorable(s)
)
_DEFAULT_NEEDS: Final[dict[str, int]] = {
    **{spec_key(s): n for s, n in _DEFAULTS},
    **{spec_key(_LN_BEG + s): n for s, n in _DEFAULTS if _anchorable(s)},
}


@lru_cache(maxsize=1)
def default_templates() -> tuple[Template, ...]:
    """The defaults in fail2ban's order: line-begin copies first, then the originals."""
    copies = [template_for(_LN_BEG + s) for s in DEFAULT_SPECS if _anchorable(s)]
    return (*copies, *(template_for(s) for s in DEFAULT_SPECS))


def anchored_defaults() -> tuple[Template, ...]:
    """The defaults bound to the line begin: what the datepattern ``{^LN-BEG}`` selects."""
    return tuple(t for t in default_templates() if t.line_begin)


def _unbound(spec: str) -> str:
    """A default spec as it is pasted into ``{DATE}``: its own bounds removed."""
    for head in (_UNB, _LN_BEG):
        if spec.startswith(head):
            spec = spec[len(head) :]
    for head in ("(^|\\b|\\W)", "(?:^|\\b|\\W)"):
        if spec.startswith(head):
            spec = spec[len(head) :]
            break
    tail = "(?=\\b|\\W|$)"
    return spec[: -len(tail)] if spec.endswith(tail) else spec


_DATE_FIELD = re.compile(r"(?<!\\)\{DATE\}", re.IGNORECASE)


def _date_is_mandatory(pattern: str) -> bool:
    """True if every match of ``pattern`` must contain its single ``{DATE}``.

    Conservative: any alternation, an optional or negative group around the date, or a
    quantifier right after it makes it False.
    """
    fields = list(_DATE_FIELD.finditer(pattern))
    if len(fields) != 1 or "|" in pattern:
        return False
    at, after = fields[0].span()
    if pattern[after : after + 1] in ("?", "*", "{", "+"):
        return False
    opened: list[int] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if i == at and in_class:
            return False
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 2 if pattern.startswith(("[]", "[^"), i) else 1
            continue
        elif c == "(":
            opened.append(i)
        elif c == ")":
            if not opened:
                return False
            start = opened.pop()
            if start < at and i >= after:
                if pattern.startswith(("(?!", "(?<!", "(?(", "(?<="), start):
                    return False
                if pattern[i + 1 : i + 2] in ("?", "*", "{"):
                    return False
        i += 1
    return True


def _literal(text: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement inserting ``text`` as is (no backslash processing)."""
    return lambda _m: text


def date_templates(pattern: str) -> list[Template]:
    """The templates of a datepattern line containing ``{DATE}``: each default date in turn.

    Like fail2ban, the special defaults are pasted by name, so ``EPOCH`` only stays an epoch
    when the line is ``{DATE}`` or ``^{DATE}`` (otherwise it is the literal text "Epoch").
    """
    needs_ok = _date_is_mandatory(pattern)
    out = []
    for spec, needs in _DEFAULTS:
        own = template_for(spec)
        inner = _unbound(spec if own.kind == PATTERN else own.name)
        wrapped = _DATE_FIELD.sub(_literal(inner), pattern)
        out.append(template_for(wrapped, needs if needs_ok and own.kind == PATTERN else 0))
    return out
