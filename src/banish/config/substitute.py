"""``<tag>`` substitution inside option values (fail2ban's recursive tag replacement).

Filters and actions write ``<mdre-<mode>>`` or ``<lt_<logtype>/__prefix_line>``: the innermost
tag is replaced first, then the result is scanned again. Tags that name nothing (``<HOST>``,
``<F-USER>`` ...) are left for the regex compiler. A value that refers to itself is an error,
not an endless loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ..errors import ConfigError

_TAG = re.compile(r"<([^ <>]+)>")
_MAX_REPLACEMENTS = 10


def substitute_tags(
    values: Mapping[str, str],
    *,
    ignore: frozenset[str] = frozenset(),
    fallback: Callable[[str], str | None] | None = None,
) -> dict[str, str]:
    """Replace ``<name>`` in every value by the value of ``name`` (or ``fallback(name)``)."""
    out = dict(values)
    for key in list(out):
        if key in ignore:
            continue
        out[key] = _substitute_one(key, out[key], out, ignore, fallback)
    return out


def _substitute_one(
    key: str,
    value: str,
    values: Mapping[str, str],
    ignore: frozenset[str],
    fallback: Callable[[str], str | None] | None,
) -> str:
    counts: dict[str, int] = {}
    changed = True
    while changed:  # a replacement can complete an outer tag: <mdre-<mode>> -> <mdre-normal>
        changed = False
        pos = 0
        while (m := _TAG.search(value, pos)) is not None:
            name = m.group(1)
            repl = None
            if name not in ignore:
                repl = values.get(name)
                if repl is None and fallback is not None:
                    repl = fallback(name)
            if repl is None:
                pos = m.end()
                continue
            if name == key or counts.get(name, 0) >= _MAX_REPLACEMENTS:
                raise ConfigError(f"<{name}> refers to itself and cannot be resolved", option=key)
            counts[name] = counts.get(name, 0) + 1
            value = value.replace(m.group(0), repl)
            pos = m.start()
            changed = True
    return value
