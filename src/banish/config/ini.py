"""fail2ban's INI dialect: files, includes, ``.local`` overrides, ``%(name)s`` interpolation.

This module owns *reading* configuration text into raw sections and resolving ``%(...)s``
references; it knows nothing about what filters, jails or actions mean (see ``filterdef.py`` and
the loaders). The same reader serves /etc/fail2ban trees and banish's own config directory.

Dialect, as fail2ban users write it:

* ``NAME.conf``, then ``NAME.d/*.conf``, ``NAME.local``, ``NAME.d/*.local`` — later files win;
  every file's own ``.local`` twin is read right after it.
* ``[INCLUDES] before = ... / after = ...`` (one file per line, relative to the including file).
* ``[DEFAULT]`` values are visible in every section.
* When a later file overrides an option of an existing section, the earlier value stays reachable
  as ``%(known/option)s`` (the section ``KNOWN/<section>``).
* ``%(section/option)s`` reads another section; ``%(default/option)s`` the defaults;
  ``%(__name__)s`` is the current section's name; ``%%`` is a literal percent sign.
* Section names with a condition (``[Init?family=inet6]``) keep their options with that suffix.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError

_REF = re.compile(r"%\(([^)]+)\)s")
_CONDITIONAL = re.compile(r"^(\w+)(\?.+)$")
_MAX_DEPTH = 10


_INLINE_HASH = re.compile(r"\s+#")
_OPTION_LINE = re.compile(r"([^=:\s][^=:]*?)\s*[=:]")


def _without_hash_comments(text: str, path: str, warnings: list[ConfigError]) -> str:
    """Cut `` # comment`` off the end of values, with a warning naming the line.

    Blog posts write ``ignoreip = 127.0.0.1/8   # your own addresses here``; configparser (and
    fail2ban) keep the comment as part of the value, and its words become host names to
    resolve. Only jail and daemon files get this: in filters and actions ``#`` is regex and
    shell text.
    """
    lines = text.split("\n")
    option = None
    for number, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if not stripped or stripped[0] in "#;[":
            continue
        if line[:1] not in " \t" and (m := _OPTION_LINE.match(line)):
            option = m.group(1).strip()
        cut = _INLINE_HASH.search(line)
        if cut is None or (line[:1] not in " \t" and cut.start() < line.find("=")):
            continue
        warnings.append(ConfigError(
            f"inline comment {line[cut.start():].strip()!r} ignored (fail2ban would read it "
            "as part of the value; put comments on a line of their own)",
            file=path, line=number, option=option))
        lines[number - 1] = line[:cut.start()]
    return "\n".join(lines)


def _parse_file(path: str, hash_comments: bool = False
                ) -> tuple[dict[str, str], dict[str, dict[str, str]], list[ConfigError]]:
    """Parse one file with Python's configparser rules (as fail2ban does), no interpolation."""
    # DEFAULT is read as an ordinary section so that its options stay apart from the others.
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=(";",), default_section="\x00none"
    )
    warnings: list[ConfigError] = []
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if hash_comments:
            text = _without_hash_comments(text, path, warnings)
        parser.read_string(text, source=path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not valid UTF-8 ({exc.reason})", file=path) from exc
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError("text before the first [section]", file=path, line=exc.lineno) from exc
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"option {exc.option!r} given twice in [{exc.section}]", file=path, line=exc.lineno
        ) from exc
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"section [{exc.section}] given twice", file=path, line=exc.lineno) from exc
    except configparser.ParsingError as exc:
        lineno = exc.errors[0][0] if exc.errors else None
        raise ConfigError("cannot parse this line", file=path, line=lineno) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc
    sections = {name: dict(parser.items(name, raw=True)) for name in parser.sections()}
    defaults = sections.pop("DEFAULT", {})
    return defaults, sections, warnings


def _with_local(paths: Iterable[str]) -> list[str]:
    listed = list(paths)
    out: list[str] = []
    for path in listed:
        out.append(path)
        local = os.path.splitext(path)[0] + ".local"
        if local not in listed and os.path.isfile(local):
            out.append(local)
    return out


@dataclass
class IniTree:
    """The merged sections of a file and everything it includes, ready for interpolation."""

    defaults: dict[str, str] = field(default_factory=dict)
    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    hash_comments: bool = False
    """Cut inline `` # comments`` from values (jail and daemon files; see above)."""
    warnings: list[ConfigError] = field(default_factory=list)
    _cache: dict[str, tuple[dict[str, str], dict[str, dict[str, str]]]] = field(
        default_factory=dict, repr=False
    )

    # -- reading ------------------------------------------------------------------------------

    @classmethod
    def read_named(cls, basedir: str, name: str, *, hash_comments: bool = False) -> IniTree:
        """Read ``basedir/name`` the way fail2ban reads ``jail``, ``filter.d/sshd`` ...

        Raises ConfigError when not even one of the candidate files exists.
        """
        base = os.path.join(basedir, name)
        candidates = [base + ".conf", *sorted(glob.glob(base + ".d/*.conf")), base + ".local",
                      *sorted(glob.glob(base + ".d/*.local"))]
        existing = [p for p in candidates if os.path.isfile(p)]
        if not existing:
            raise ConfigError(f"no such file (looked for {base}.conf and {base}.local)", file=base + ".conf")
        tree = cls(hash_comments=hash_comments)
        tree.read(existing)
        return tree

    @classmethod
    def read_file(cls, path: str) -> IniTree:
        if not os.path.isfile(path):
            raise ConfigError("no such file", file=path)
        tree = cls()
        tree.read([path])
        return tree

    def read(self, paths: list[str]) -> None:
        for path in self._expand_includes(paths, ()):
            self._merge(path)

    def _parsed(self, path: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        hit = self._cache.get(path)
        if hit is None:
            defaults, sections, warnings = _parse_file(path, self.hash_comments)
            self.warnings.extend(warnings)
            hit = self._cache[path] = (defaults, sections)
        return hit

    def _expand_includes(self, paths: list[str], seen: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for path in _with_local(paths):
            _, sections = self._parsed(path)
            before: list[str] = []
            after: list[str] = []
            includes = sections.get("INCLUDES", {})
            for key, bucket in (("before", before), ("after", after)):
                for item in includes.get(key, "").split("\n"):
                    item = item.strip()
                    if not item:
                        continue
                    target = item if os.path.isabs(item) else os.path.join(os.path.dirname(path), item)
                    if target in seen or target == path:
                        continue
                    if not os.path.isfile(target):
                        if target.endswith(".local"):
                            continue  # optional overrides, as in fail2ban's common.conf
                        raise ConfigError(f"included file {item!r} does not exist", file=path,
                                          section="INCLUDES", option=key)
                    bucket.extend(self._expand_includes([target], (*seen, path)))
            out.extend([*before, path, *after])
        return out

    def _merge(self, path: str) -> None:
        defaults, sections = self._parsed(path)
        self.files.append(path)
        self.defaults.update(defaults)
        for name, options in sections.items():
            cond = _CONDITIONAL.match(name)
            if cond:
                name, suffix = cond.groups()
                options = {k + suffix: v for k, v in options.items()}
            existing = self.sections.get(name)
            if existing is None:
                self.sections[name] = dict(options)
                continue
            known = self.sections.setdefault("KNOWN/" + name, {})
            known.update({k: v for k, v in existing.items() if k in options})
            existing.update(options)

    # -- access -------------------------------------------------------------------------------

    def has_section(self, section: str) -> bool:
        return section in self.sections

    def own_options(self, section: str) -> list[str]:
        """Options written in ``section`` itself (without the [DEFAULT] ones)."""
        return list(self.sections.get(section, {}))

    def raw(self, section: str, option: str) -> str | None:
        opts = self.sections.get(section)
        if opts is not None and option in opts:
            return opts[option]
        if section != "DEFAULT" and section not in self.sections:
            return None
        return self.defaults.get(option)

    def get(self, section: str, option: str, vars: Mapping[str, str] | None = None) -> str | None:
        """The interpolated value, or None if the option does not exist.

        ``vars`` (e.g. a jail's arguments to a filter) win over the section and the defaults,
        as in fail2ban. ``option`` may be ``sec/opt`` (read and interpolated in section
        ``sec``), ``known/opt`` (the value this section had before an override) or
        ``default/opt``.
        """
        vars = vars or {}
        sec, slash, opt = option.rpartition("/")
        opt = opt.lower()
        if slash:
            low = sec.lower()
            if low == "known":
                places = ["KNOWN/" + section, section]
            elif low == "default":
                places = ["DEFAULT"]
            else:
                places = [sec]
            for place in places:
                value = self._get_plain(place, opt, vars)
                if value is not None:
                    return value
        return self._get_plain(section, sec + slash + opt, vars)

    def _get_plain(self, section: str, option: str, vars: Mapping[str, str]) -> str | None:
        value = vars[option] if option in vars else self.raw(section, option)
        if value is None:
            return None
        return self.interpolate(section, option, value, vars)

    def _reference(self, section: str, name: str, vars: Mapping[str, str]) -> str | None:
        low = name.lower()
        if low in vars:
            return vars[low]
        if low == "__name__":
            return section
        if "/" in name:
            sec, _, opt = name.partition("/")
            opt = opt.lower()
            if sec.lower() == "known":
                v = self.sections.get("KNOWN/" + section, {}).get(opt)
                return v if v is not None else self.defaults.get(opt)
            if sec.lower() == "default":
                return self.defaults.get(opt)
            v = self.sections.get(sec, {}).get(opt)
            return v if v is not None else self.defaults.get(opt)
        return self.raw(section, low)

    def interpolate(self, section: str, option: str, value: str, vars: Mapping[str, str],
                    depth: int = 0) -> str:
        if "%" not in value:
            return value
        if depth > _MAX_DEPTH:
            raise ConfigError("%(...)s references nest too deeply (a loop?)",
                              section=section, option=option)
        out: list[str] = []
        pos = 0
        while True:
            i = value.find("%", pos)
            if i < 0:
                out.append(value[pos:])
                break
            out.append(value[pos:i])
            nxt = value[i + 1:i + 2]
            if nxt == "%":
                out.append("%")
                pos = i + 2
                continue
            m = _REF.match(value, i)
            if not m:
                raise ConfigError(f"'%' must be followed by '%' or '(name)s', found {value[i:i + 12]!r}",
                                  section=section, option=option)
            ref = m.group(1)
            sub = self._reference(section, ref, vars)
            if sub is None:
                raise ConfigError(f"unknown reference %({ref})s", section=section, option=option)
            out.append(self.interpolate(section, option, sub, vars, depth + 1))
            pos = m.end()
        return "".join(out)
