"""Turn a filter file (``filter.d/NAME.conf`` and its overrides) into a typed definition.

This is where fail2ban's filter semantics live: ``[Init]`` values and a jail's filter arguments
(``sshd[mode=aggressive]``) override definitions, ``known/`` keeps the overridden value, and
``<tag>`` substitution runs over the combined options. The result holds plain regex *text*; the
matcher compiles it (``match/filter.py``). Also the ``name[key=value, ...]`` syntax that
``filter =`` and ``action =`` values share (split_specs, split_name_args, parse_args).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from .ini import IniTree
from .substitute import substitute_tags

# The options a filter may define in [Definition], as fail2ban's filter reader knows them.
FILTER_OPTIONS = ("usedns", "prefregex", "ignoreregex", "failregex", "maxlines", "datepattern",
                  "journalmatch")

_ARGS = re.compile(r"^\s*([\w\-./]+)\s*(?:\[(.*)\])?\s*$", re.S)
_CONDITIONAL = re.compile(r"^(\w+)(\?.+)$")
# A tag left after substitution that names an option-like word (lower case, as options are)
# is a typo or an unknown mode; upper-case ones such as <NOSRV> are literal log text.
_LEFTOVER_TAG = re.compile(r"(?<!\(\?P)<([a-z_][a-z0-9_\-]*(?:/[\w\-]+)?)>")


@dataclass(frozen=True, slots=True)
class FilterDefinition:
    """What a filter file says, after interpolation and tag substitution."""

    name: str
    file: str
    failregex: tuple[str, ...]
    ignoreregex: tuple[str, ...] = ()
    prefregex: str | None = None
    maxlines: int = 1
    datepattern: str | None = None
    journalmatch: tuple[tuple[str, ...], ...] = ()
    usedns: str = "yes"
    logtype: str = "file"
    options: Mapping[str, str] = field(default_factory=dict)


def split_name_args(spec: str) -> tuple[str, dict[str, str]]:
    """``sshd[mode=aggressive, port="22,2222"]`` -> (``sshd``, {...})."""
    m = _ARGS.match(spec)
    if not m:
        raise ConfigError(f"cannot read {spec!r} as NAME or NAME[key=value, ...]")
    return m.group(1), parse_args(m.group(2) or "")


def split_specs(text: str) -> tuple[str, ...]:
    """A jail's ``action`` value, one spec per action, as fail2ban splits it.

    Actions are separated by white space (normally line breaks) outside ``[...]``; options in
    brackets may span lines, and ``name [opts]`` may have a space before the bracket.
    """
    specs: list[str] = []
    current: list[str] = []
    depth, quote, i, n = 0, "", 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            quote = "" if c == quote else quote
        elif depth and c in "\"'" and _after_equals(current):
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth = max(0, depth - 1)
        elif c.isspace() and not depth:
            j = i
            while j < n and text[j].isspace():
                j += 1
            if current and not (j < n and text[j] == "["):
                specs.append("".join(current))
                current = []
            i = j
            continue
        current.append(c)
        i += 1
    if current:
        specs.append("".join(current))
    return tuple(specs)


def _after_equals(chars: list[str]) -> bool:
    """A quote opens a value only right after ``=`` (``msg=don't`` is not quoted)."""
    for c in reversed(chars):
        if not c.isspace():
            return c == "="
    return False


def parse_args(text: str) -> dict[str, str]:
    """Parse ``key=value, key2="a, b"`` as fail2ban writes arguments of filters and actions."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ConfigError(f"argument {text[i:].strip()!r} has no '='")
        key = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "\"'":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end < 0:
                raise ConfigError(f"argument {key!r} has an unclosed quote")
            value = text[i + 1:end]
            i = end + 1
        else:
            end = i
            depth = 0
            while end < n and (text[end] != "," or depth):
                depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(text[end], 0)
                end += 1
            value = text[i:end].strip()
            i = end
        out[key] = value
    return out


def _read_tree(config_dir: str | None, name: str) -> tuple[IniTree, str, str]:
    """Find the filter by name in ``config_dir/filter.d`` or as a path to a file."""
    looks_like_path = os.sep in name or name.endswith((".conf", ".local"))
    if looks_like_path:
        path = name
        stem = os.path.splitext(path)[0]
        files = [p for p in (stem + ".conf", stem + ".local") if os.path.isfile(p)]
        if not os.path.isfile(path) and not files:
            raise ConfigError("no such filter file", file=path)
        tree = IniTree()
        tree.read(files if path not in files else [path, *[f for f in files if f != path]])
        return tree, os.path.basename(stem), path
    if config_dir is None:
        raise ConfigError(f"unknown filter {name!r}")
    base = os.path.join(config_dir, "filter.d")
    try:
        tree = IniTree.read_named(base, name)
    except ConfigError as exc:
        if not os.path.exists(os.path.join(base, name + ".conf")) and not os.path.exists(
            os.path.join(base, name + ".local")
        ):
            raise ConfigError(f"unknown filter {name!r} (no {name}.conf in {base})") from exc
        raise
    main = os.path.join(base, name + ".conf")
    return tree, name, main if os.path.isfile(main) else os.path.join(base, name + ".local")


def load_filter(config_dir: str | None, spec: str,
                extra: Mapping[str, str] | None = None) -> FilterDefinition:
    """Load a filter given as ``name``, ``name[args]`` or a file path.

    ``extra`` options (from ``--opt`` or a jail) are merged over the inline arguments.
    """
    name, args = split_name_args(spec) if "[" in spec else (spec.strip(), {})
    opts = {k.lower(): v for k, v in {**args, **(extra or {})}.items()}
    tree, short, path = _read_tree(config_dir, name)
    try:
        return _resolve(tree, short, path, opts)
    except ConfigError as exc:
        raise exc.located(file=path, section="Definition") from exc


def _resolve(tree: IniTree, name: str, path: str, passed: dict[str, str]) -> FilterDefinition:
    definition: dict[str, str] = {}
    for opt in FILTER_OPTIONS:
        if opt in passed:
            continue
        value = tree.get("Definition", opt, vars=passed)
        if value is not None:
            definition[opt] = value
    init: dict[str, str] = dict(passed)
    if tree.has_section("Init"):
        for opt in tree.own_options("Init"):
            value = tree.get("Init", opt, vars=passed) or ""
            if not opt.startswith("known/"):
                init["known/" + opt] = value
            init.setdefault(opt, value)
    combined = {**definition, **init}
    ignore = frozenset(m.group(1) for k in combined if (m := _CONDITIONAL.match(k)))

    def fallback(tag: str) -> str | None:
        try:
            return tree.get("Definition", tag, vars=passed)
        except ConfigError:
            return None

    values = substitute_tags(combined, ignore=ignore, fallback=fallback)
    for opt in ("failregex", "ignoreregex", "prefregex", "datepattern"):
        leftover = _LEFTOVER_TAG.search(values.get(opt) or "")
        if leftover:
            hint = ""
            if leftover.group(1).startswith(("mdre-", "mode")) and "mode" in values:
                hint = f" (is mode={values['mode']!r} a mode this filter knows?)"
            raise ConfigError(f"unknown tag <{leftover.group(1)}>: no option of that name{hint}",
                              option=opt)
    failregex = _lines(values.get("failregex"))
    if not failregex:
        raise ConfigError("no failregex defined", option="failregex")
    maxlines_text = values.get("maxlines", "1").strip() or "1"
    try:
        maxlines = int(maxlines_text)
    except ValueError:
        raise ConfigError(f"maxlines must be a whole number, not {maxlines_text!r}",
                          option="maxlines") from None
    if maxlines < 1:
        raise ConfigError("maxlines must be at least 1", option="maxlines")
    journalmatch = tuple(tuple(shlex.split(line)) for line in _lines(values.get("journalmatch")))
    logtype = (values.get("logtype") or tree.get("Definition", "logtype", vars=passed) or "file")
    prefregex = values.get("prefregex")
    return FilterDefinition(
        name=name,
        file=path,
        failregex=tuple(failregex),
        ignoreregex=tuple(_lines(values.get("ignoreregex"))),
        prefregex=prefregex if prefregex and prefregex.strip() else None,
        maxlines=maxlines,
        datepattern=(values.get("datepattern") or "").strip() or None,
        journalmatch=journalmatch,
        usedns=(values.get("usedns") or "yes").strip(),
        logtype=logtype.strip(),
        options=values,
    )


def _lines(value: str | None) -> list[str]:
    if not value:
        return []
    return [line for line in value.split("\n") if line != ""]
