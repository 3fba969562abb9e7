"""The INI reader speaks fail2ban's dialect: includes, .local, known/, sections, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from banish.config.filterdef import load_filter, parse_args, split_name_args
from banish.config.ini import IniTree
from banish.config.substitute import substitute_tags
from banish.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "filter.d/common.conf", """
[INCLUDES]
after = common.local
[DEFAULT]
_daemon = \\S*
__prefix = <_daemon>\\[\\d+\\]:
logtype = file
[lt_file]
pre = FILE
[lt_journal]
pre = JOURNAL
""")
    write(tmp_path / "filter.d/demo.conf", """
[INCLUDES]
before = common.conf
[DEFAULT]
_daemon = demo
[Definition]
mode = normal
base = ^%(__prefix)s fail from <HOST>$
failregex = %(base)s
            <extra-<mode>>
extra-normal =
extra-aggressive = ^probe from <HOST>$
prefix = <lt_<logtype>/pre>
ignoreregex = ; a comment only
maxlines = 1
journalmatch = _SYSTEMD_UNIT=demo.service + _COMM=demo
[Init]
answer = 42
""")
    write(tmp_path / "filter.d/demo.local", """
[Definition]
failregex = %(known/failregex)s
            ^local from <HOST>$
""")
    return tmp_path


def test_includes_local_and_known(tree: Path) -> None:
    d = load_filter(str(tree), "demo")
    assert d.failregex == (
        r"^demo\[\d+\]: fail from <HOST>$",
        "^local from <HOST>$",
    )
    assert d.journalmatch == (("_SYSTEMD_UNIT=demo.service", "+", "_COMM=demo"),)
    assert d.ignoreregex == ()
    assert d.options["answer"] == "42" and d.options["known/answer"] == "42"


def test_mode_argument_and_nested_tags(tree: Path) -> None:
    d = load_filter(str(tree), "demo[mode=aggressive]")
    assert d.failregex[-2:] == ("^probe from <HOST>$", "^local from <HOST>$")


def test_tag_with_section_reference_follows_logtype(tree: Path) -> None:
    tree_ = IniTree.read_named(str(tree / "filter.d"), "demo")
    assert tree_.get("Definition", "lt_journal/pre") == "JOURNAL"
    values = substitute_tags({"x": "<prefix>", "logtype": "journal"},
                             fallback=lambda t: tree_.get("Definition", t))
    assert values["x"] == "JOURNAL"


def test_self_reference_is_an_error() -> None:
    with pytest.raises(ConfigError, match="refers to itself"):
        substitute_tags({"a": "<b>", "b": "<a>"})


def test_unknown_tags_stay_for_the_regex_compiler() -> None:
    assert substitute_tags({"a": "<HOST> <F-USER>x</F-USER>"})["a"] == "<HOST> <F-USER>x</F-USER>"


def test_percent_escape_and_name(tmp_path: Path) -> None:
    write(tmp_path / "x.conf", "[sshd]\nname = %(__name__)s\nrate = 100%%\n")
    t = IniTree.read_file(str(tmp_path / "x.conf"))
    assert t.get("sshd", "name") == "sshd"
    assert t.get("sshd", "rate") == "100%"


@pytest.mark.parametrize(("text", "reason"), [
    ("[Definition]\nfailregex = %(missing)s\n", "unknown reference %(missing)s"),
    ("failregex = x\n", "text before the first [section]"),
    ("[Definition]\na = 1\na = 2\n", "given twice"),
    ("[Definition]\nfailregex = 50% <HOST>\n", "'%' must be followed"),
])
def test_bad_files_name_the_place(tmp_path: Path, text: str, reason: str) -> None:
    write(tmp_path / "filter.d/bad.conf", text)
    with pytest.raises(ConfigError) as err:
        load_filter(str(tmp_path), "bad")
    msg = str(err.value)
    assert reason in msg and "bad.conf" in msg and "\n" not in msg


def test_unknown_include_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "filter.d/inc.conf", "[INCLUDES]\nbefore = nothere.conf\n"
          "[Definition]\nfailregex = <HOST>\n")
    with pytest.raises(ConfigError, match=r"nothere\.conf.*does not exist"):
        load_filter(str(tmp_path), "inc")


def test_unknown_filter(tmp_path: Path) -> None:
    (tmp_path / "filter.d").mkdir()
    with pytest.raises(ConfigError, match="unknown filter 'nope'"):
        load_filter(str(tmp_path), "nope")


def test_arguments() -> None:
    assert split_name_args('iptables[name=SSH, port="22,2222", protocol=tcp]') == (
        "iptables", {"name": "SSH", "port": "22,2222", "protocol": "tcp"})
    assert parse_args("mode=aggressive") == {"mode": "aggressive"}
    assert parse_args("a=x[1,2], b='q'") == {"a": "x[1,2]", "b": "q"}
    with pytest.raises(ConfigError):
        parse_args("novalue")
