"""``banish check`` / ``banish -t`` and ``banish dump`` / ``banish -d`` on small config trees.

The trees are written here (a filter of our own, not fail2ban's); Debian's installed
/etc/fail2ban is only read, when it is there.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from banish.cli.check import check_config, fail2ban_spelling
from banish.cli.main import main
from banish.paths import packaged_config_dir

DEMO_FILTER = "[Definition]\nfailregex = ^auth failure from <HOST>$\n"
INLINE_COMMENT = "ignoreip = 127.0.0.1/8   # suggest listing your valid server IP ranges here\n"


def make_tree(tmp: Path, jails: str, local: str = "") -> Path:
    (tmp / "filter.d").mkdir()
    (tmp / "filter.d" / "demo.conf").write_text(DEMO_FILTER, encoding="utf-8")
    (tmp / "jail.conf").write_text(
        "[DEFAULT]\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n"
        f"logpath = {tmp}/demo.log\nfilter = demo\n\n" + jails, encoding="utf-8")
    if local:
        (tmp / "jail.local").write_text(local, encoding="utf-8")
    return tmp


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(argv)
    return status, out.getvalue()


def enabled(*names: str, extra: str = "") -> str:
    return "".join(f"[{n}]\nenabled = true\n{extra if n == names[-1] else ''}\n" for n in names)


def test_broken_filter_skips_that_jail_only(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, enabled("alpha", "beta", "gamma", extra="filter = nosuchfilter\n"))
    status, out = run(["check", "--config", str(tree)])
    assert status == 2
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    error = errors[0]
    assert f"{tree}/jail.conf [gamma] filter: unknown filter 'nosuchfilter'" in error
    assert "ok: alpha" in out.splitlines()
    assert "ok: beta" in out.splitlines()
    assert out.splitlines()[-1] == "2 jails ok, 1 skipped"


def test_jail_level_bad_regex_is_placed_in_the_jail(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, enabled("alpha", "beta", extra="failregex = (unclosed\n"))
    status, out = run(["check", "--config", str(tree)])
    assert status == 2
    assert f"error: jail 'beta' skipped: {tree}/jail.conf [beta] failregex: invalid regex" in out
    assert out.splitlines()[-1] == "1 jails ok, 1 skipped"


def test_bad_regex_in_the_filter_file_names_the_filter(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, enabled("alpha"))
    (tree / "filter.d" / "demo.conf").write_text("[Definition]\nfailregex = (<HOST>\n",
                                                 encoding="utf-8")
    report = check_config(str(tree))
    assert report.exit_code == 2 and report.skipped == ["alpha"]
    assert f"{tree}/filter.d/demo.conf [Definition] failregex: invalid regex" in report.lines[-1]


def test_inline_comment_warns_and_dump_drops_the_words(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, enabled("alpha"), local="[DEFAULT]\n" + INLINE_COMMENT)
    status, out = run(["check", "--config", str(tree)])
    assert status == 0
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2  # the comment, and the demo log that does not exist
    assert "demo.log matches no file: the jail watches for it" in warnings[1]
    assert f"{tree}/jail.local:2 ignoreip: inline comment '# suggest listing" in warnings[0]
    assert out.splitlines()[-1] == "1 jails ok, 0 skipped"

    status, dumped = run(["dump", "--config", str(tree), "--json"])
    assert status == 0
    document = json.loads(dumped)
    (jail,) = document["jails"]
    assert jail["ignoreip"] == {"networks": ["127.0.0.0/8"], "names": []}
    assert len(document["warnings"]) == 1
    status, human = run(["dump", "--config", str(tree)])
    assert "suggest" not in human.replace(document["warnings"][0], "")


def test_broken_daemon_settings_exit_2(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, enabled("alpha"))
    (tree / "banish.conf").write_text("[Definition]\ndbpurgeage = soon\n", encoding="utf-8")
    status, out = run(["check", "--config", str(tree)])
    assert status == 2
    assert out.splitlines()[0].startswith(f"error: {tree}/banish.conf [Definition]")
    assert out.splitlines()[-1] == f"{tree}: configuration not loaded"


def test_missing_directory_is_broken(tmp_path: Path) -> None:
    report = check_config(str(tmp_path / "nope"))
    assert report.exit_code == 2 and report.broken


@pytest.mark.skipif(not os.path.isfile("/etc/fail2ban/jail.conf"),
                    reason="Debian's fail2ban package is not installed")
def test_debian_stock_tree_passes() -> None:
    status, out = run(["-t", "-c", "/etc/fail2ban"])
    assert status == 0, out
    assert "ok: sshd" in out.splitlines()
    assert out.splitlines()[-1].endswith(" 0 skipped")


def test_packaged_config_passes() -> None:
    report = check_config(packaged_config_dir())
    assert report.exit_code == 0, report.lines
    assert report.ok


def test_dump_numbers_and_fields(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, enabled("alpha", extra="bantime = -1\nignoreip = ::1 host.example\n"))
    status, out = run(["-d", "--config", str(tree), "--json"])
    assert status == 0
    (jail,) = json.loads(out)["jails"]
    assert (jail["maxretry"], jail["findtime"], jail["bantime"]) == (3, 600, -1)
    assert isinstance(jail["findtime"], int)
    assert jail["ignoreip"] == {"networks": ["::1/128"], "names": ["host.example"]}
    assert jail["filter"]["failregex"] == ["^auth failure from <HOST>$"]
    assert jail["filter"]["file"] == f"{tree}/filter.d/demo.conf"
    assert jail["firewall"]["backend"] == "null"
    status, human = run(["dump", "--config", str(tree)])
    assert "  findtime              600\n" in human
    assert "  bantime               -1\n" in human


def test_dump_lists_skipped_jails(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, enabled("alpha", "beta", extra="maxretry = 0\n"))
    status, out = run(["dump", "--config", str(tree), "--json"])
    assert status == 0
    document = json.loads(out)
    assert [j["name"] for j in document["jails"]] == ["alpha"]
    assert [s["name"] for s in document["skipped"]] == ["beta"]
    assert "[beta] maxretry" in document["skipped"][0]["error"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["-t"], ["check"]),
    (["--test", "--config", "D"], ["check", "--config", "D"]),
    (["-c", "D", "-t"], ["check", "-c", "D"]),
    (["--socket", "S", "-d", "--json"], ["--socket", "S", "dump", "--json"]),
    (["--socket=S", "--dump"], ["--socket=S", "dump"]),
    (["-d", "--jail", "sshd"], ["dump", "--jail", "sshd"]),
    (["-t", "--help"], ["check", "--help"]),
    (["status", "-t"], ["status", "-t"]),
    (["regex", "line", "sshd"], ["regex", "line", "sshd"]),
    ([], []),
])
def test_fail2ban_spelling(argv: list[str], expected: list[str]) -> None:
    assert fail2ban_spelling(argv) == expected
