"""``banish regex`` on the command line: outputs, options and one-line errors with exit 2."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from banish.cli.main import main

NOW = "1124013600"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def write_filter(tmp: Path, body: str, name: str = "f") -> Path:
    d = tmp / "filter.d"
    d.mkdir(exist_ok=True)
    (d / f"{name}.conf").write_text(body, encoding="utf-8")
    return tmp


def test_bare_regex_and_literal_line() -> None:
    code, out, _ = run("regex", "--json", "--now", NOW,
                       "2005-08-14 10:00:00 login failed from 192.0.2.9", r"failed from <HOST>$")
    assert code == 0
    row = json.loads(out)
    assert row["match"] is True and row["host"] == "192.0.2.9" and row["line"] == 1


def test_human_output_counts(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("2005-08-14 10:00:00 login failed from 192.0.2.9\n"
                   "2005-08-14 10:00:01 all fine\n"
                   "2005-08-14 10:00:02 login failed from 192.0.2.10\n")
    code, out, _ = run("regex", "--now", NOW, "--print-all-missed", str(log),
                       r"failed from <HOST>$")
    assert code == 0
    assert "Lines: 3 lines, 0 ignored, 2 matched, 1 missed" in out
    assert "all fine" in out


def test_journal_lines_are_stamped_with_now(tmp_path: Path) -> None:
    code, out, _ = run("regex", "--json", "--now", NOW, "--opt", "logtype=journal",
                       "login failed from 192.0.2.9", r"failed from <HOST>$")
    assert code == 0
    assert json.loads(out)["time"] is not None


@pytest.mark.parametrize(("body", "expect"), [
    ("[Definition]\nfailregex = ^(unclosed <HOST>\n", "f.conf [Definition] failregex: invalid regex"),
    ("[Definition]\nfailregex = ^no host here$\n", "failregex: failregex '^no host here$' has no host group"),
    ("[INCLUDES]\nbefore = gone.conf\n[Definition]\nfailregex = <HOST>\n", "included file 'gone.conf' does not exist"),
    ("[Definition]\nfailregex = ^<HOST> <nosuchtag>\n", "unknown tag <nosuchtag>"),
    ("[Definition]\nfailregex = <HOST>\ndatepattern = %Q%Y\n", "datepattern"),
])
def test_broken_filter_is_one_line_exit_2(tmp_path: Path, body: str, expect: str) -> None:
    cfg = write_filter(tmp_path, body)
    log = tmp_path / "x.log"
    log.write_text("x\n")
    code, out, err = run("regex", "--config", str(cfg), str(log), "f")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expect in err and "f.conf" in err, err


def test_bad_usage_exit_2() -> None:
    code, _, err = run("regex", "--opt", "novalue", "x", "<HOST>")
    assert code == 2 and "--opt 'novalue'" in err
    code, _, err = run("regex")
    assert code == 2 and err.startswith("banish:")


def test_hostile_input_never_crashes(tmp_path: Path) -> None:
    log = tmp_path / "h.log"
    log.write_bytes(b"Aug 14 11:59:59 host sshd[1]: Failed password for \xff\xfe\x00 from 192.0.2.1"
                    b" port 22 ssh2\n" + b"a" * 1_000_000 + b"\n\x00\x00\n")
    code, out, _ = run("regex", "--json", "--now", NOW, str(log), "sshd")
    assert code == 0
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[0]["host"] == "192.0.2.1" and not rows[1]["match"]


@pytest.mark.parametrize(("spec", "hint"), [
    ("sshdd", "(closest: sshd)"),
    ("sshdd[mode=aggressive]", "(closest: sshd)"),
    ("nginx-htp-auth", "(closest: nginx-http-auth"),
])
def test_mistyped_filter_name_is_no_filter_named(spec: str, hint: str) -> None:
    from banish.paths import packaged_config_dir

    code, out, err = run("regex", "2005-08-14 10:00:00 login failed from 192.0.2.9", spec)
    name = spec.split("[")[0]
    where = f"{packaged_config_dir()}/filter.d"
    assert code == 2 and out == ""
    assert err.startswith(f"banish: no filter named {name!r} in {where} {hint}"), err
    assert err.endswith(")\n") and err.count("\n") == 1


def test_unknown_name_without_close_match_lists_the_filters(tmp_path: Path) -> None:
    cfg = write_filter(tmp_path, "[Definition]\nfailregex = <HOST>\n", name="web")
    code, _, err = run("regex", "--config", str(cfg), "x", "zzz")
    assert code == 2
    assert err == f"banish: no filter named 'zzz' in {cfg}/filter.d (filters: web)\n"


@pytest.mark.parametrize(("spec", "expect"), [
    (r"failed login from <HOST>$", 0),   # a bare failregex still runs
    (r"^login fa.led", 2),               # a regex, not a name: the host-group error
])
def test_regexes_are_not_taken_for_names(spec: str, expect: int) -> None:
    code, _, err = run("regex", "--json", "--now", NOW,
                       "2005-08-14 10:00:00 login failed from 192.0.2.9", spec)
    assert code == expect
    assert "no filter named" not in err
