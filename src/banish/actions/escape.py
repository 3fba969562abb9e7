"""The one way a value from a log, DNS or whois reaches a shell command line: not as text.

Owns `shell_command`, which turns a fail2ban action.d script (static tags already filled in)
plus the untrusted tag values (``<matches>``, ``<F-USER>``, ``<fid>``...) into an argv.
Each ``<tag>`` in the script becomes a reference to a shell variable, and the value itself is
passed as a separate argument that the prelude copies into that (exported) variable. The
shell therefore never *parses* a value: ``$(id)``, backquotes, ``;``, newlines and quotes stay
plain data. This is fail2ban 1.0's own approach (its ``f2bV_`` variables), so its action.d
scripts, written as ``"<matches>"``, keep working. Must not run anything, and nothing else in
banish may paste log-derived text into a command string.

The reference is shaped by the quoting around the tag, which a small scanner tracks:

- unquoted ``<matches>``  -> ``"${banish_matches}"`` (one word: no splitting, no globbing)
- ``"...<matches>..."``  -> ``${banish_matches}``   (expanded inside the script's own quotes)
- ``'...<matches>...'``  -> ``"${banish_matches}"`` left literal: single quotes usually hold
  code for another interpreter (``sh -c '...'``, ``ssh host '...'``); a nested shell expands
  it from the environment, anything else sees the literal name, never the value.

(``<F-USER>`` becomes ``banish_F_USER``: every non-word character turns into ``_``.)

A mistaken guess of the quoting costs exactness (extra quotes, word splitting), never
execution. What no escaping can make safe is a script that hands a *double-quoted* string to
another interpreter (``sh -c "... <matches>"``, ``eval "..."``): there the outer shell inserts
the value into code. Scripts must single-quote such code, as fail2ban's own do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_VALUE_BYTES = 100_000
"""Longest value passed on (UTF-8 bytes); Linux refuses any single argument over 128 KiB."""

_TRUNCATED = " ...[truncated by banish]"
_VAR_PREFIX = "banish_"
_TAG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_WORD_START = frozenset(" \t\n;&|()")


def shell_command(script: str, values: Mapping[str, str], *, shell: str = "/bin/sh") -> list[str]:
    """The argv that runs ``script`` with each ``<name>`` of ``values`` bound, unparsed.

    Tags not named in ``values`` are left as they are; a value is never searched for tags
    (no recursive substitution). NUL, which no argument can carry, becomes U+FFFD, and a value
    longer than `MAX_VALUE_BYTES` is cut (marked) rather than making the command fail.
    """
    for name in values:
        if not _TAG_NAME.fullmatch(name):
            raise ValueError(f"not a tag name: {name!r}")
    if not values:
        return [shell, "-c", script]
    variables = _variable_names(values)
    pattern = re.compile(
        "<(" + "|".join(re.escape(n) for n in sorted(values, key=len)[::-1]) + ")>"
    )
    body, used = _substitute(script, pattern, variables)
    names = [n for n in values if n in used]
    if not names:
        return [shell, "-c", script]
    assign = " ".join(f"{variables[n]}=${{{i}}}" for i, n in enumerate(names, start=1))
    exports = " ".join(variables[n] for n in names)
    prelude = f"{assign}; export {exports}; set --\n"
    return [shell, "-c", prelude + body, "banish", *(_clean(values[n]) for n in names)]


def _variable_names(values: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in values:
        var = _VAR_PREFIX + re.sub(r"\W", "_", name)
        candidate, n = var, 2
        while candidate in taken:
            candidate, n = f"{var}_{n}", n + 1
        taken.add(candidate)
        out[name] = candidate
    return out


def _clean(value: str) -> str:
    value = value.replace("\0", "\ufffd")
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_VALUE_BYTES:
        return value
    cut = raw[: MAX_VALUE_BYTES - len(_TRUNCATED)].decode("utf-8", "ignore")
    return cut + _TRUNCATED


@dataclass(slots=True)
class _Frame:
    """One open quoting context. ``closer`` says what ends it; ``depth`` counts "(" in $( )."""

    kind: str  # "plain" (top level, $( ), backquotes), "dq" or "sq" (also $'...')
    closer: str = ""  # "" top level / quotes, ")" for $( ), "`" for backquotes, "ansi" for $'
    depth: int = 0


def _substitute(
    script: str, pattern: re.Pattern[str], variables: Mapping[str, str]
) -> tuple[str, set[str]]:
    """Replace tags while tracking POSIX shell quoting with a stack of open contexts.

    Here-documents and ``${x:-...}`` words are not modelled; there a wrong guess costs
    exactness only (see the module docstring).
    """
    out: list[str] = []
    used: set[str] = set()
    stack = [_Frame("plain")]
    i, n = 0, len(script)
    while i < n:
        top = stack[-1]
        c = script[i]
        m = pattern.match(script, i) if c == "<" else None
        if m:
            used.add(m.group(1))
            ref = "${" + variables[m.group(1)] + "}"
            out.append(ref if top.kind == "dq" else f'"{ref}"')
            i = m.end()
            continue
        step = 1
        if top.kind == "sq":
            if c == "\\" and top.closer == "ansi":
                step = 2
            elif c == "'":
                stack.pop()
        elif c == "\\":
            step = 2
        elif script.startswith("$(", i):
            stack.append(_Frame("plain", ")"))
            step = 2
        elif c == "`" and top.closer != "`":
            stack.append(_Frame("plain", "`"))
        elif top.kind == "dq":
            if c == '"':
                stack.pop()
        elif c == "`" or (c == ")" and top.closer == ")" and top.depth == 0):
            stack.pop()
        elif c == "'":
            stack.append(_Frame("sq"))
        elif script.startswith("$'", i):
            stack.append(_Frame("sq", "ansi"))
            step = 2
        elif c == '"':
            stack.append(_Frame("dq"))
        elif c in "()" and top.closer == ")":
            top.depth += 1 if c == "(" else -1
        elif c == "#" and (i == 0 or script[i - 1] in _WORD_START):
            end = script.find("\n", i)
            step = (n if end < 0 else end) - i
        out.append(script[i : i + step])
        i += step
        if not stack:  # an unbalanced closer in a broken script: carry on at top level
            stack.append(_Frame("plain"))
    return "".join(out), used
