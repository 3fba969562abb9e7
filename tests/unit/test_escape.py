"""shell_command: hostile log text reaches a real shell as data, exactly, and never as code.

Every check runs the produced argv through /bin/sh (and bash when installed), because the
only proof that matters is what a real shell does with it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from banish.actions.escape import MAX_VALUE_BYTES, shell_command

SHELLS = [s for s in ("/bin/sh", "/bin/bash") if Path(s).exists()]

HOSTILE = [
    "$(id)",
    "`id`",
    "a; id",
    "a\nid",
    "a\r\nid",
    "~!",
    "~root",
    "!!",
    "'",
    '"',
    "\\",
    "\\'",
    "x'\"$(id)`id`\"'y",
    "a  b\t*",
    "${PATH}",
    "$HOME $1 $@ $0",
    "-rf",
    "a\x00b",
    "\x1b[31mred",
    "naïve ✓ Ω",
    "<v>",
    "",
    "}{)(][><|&",
    "\\\n",
]

# (script, whether it strips trailing newlines like $( ) does)
EXACT_CONTEXTS = [
    ("printf '%s' <v>", False),
    ("printf '%s' \"<v>\"", False),
    ("printf '%s' \"[<v>]\"", False),
    ('x="pre-<v>-post"; printf \'%s\' "$x"', False),
    ("printf '%s' \"$(printf '%s' \"<v>\")\"", True),
    ("printf '%s' \"$(printf '%s' <v>)\"", True),
    ("sh -c 'printf %s <v>'", False),
    ("printf '%s' <v> # it's a comment with '<v>'", False),
]


def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=10, check=False)


def expected(value: str, script: str, strips: bool) -> bytes:
    data = value.replace("\0", "\ufffd")
    if "pre-" in script:
        data = f"pre-{data}-post"
    if "[" in script:
        data = f"[{data}]"
    raw = data.encode("utf-8", "surrogateescape")
    return raw.rstrip(b"\n") if strips else raw


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("script", "strips"), EXACT_CONTEXTS)
def test_value_arrives_exactly(shell: str, script: str, strips: bool) -> None:
    for value in HOSTILE:
        done = run(shell_command(script, {"v": value}, shell=shell))
        assert done.returncode == 0, (value, done.stderr)
        assert done.stdout == expected(value, script, strips), value


@pytest.mark.parametrize("value", HOSTILE)
def test_value_never_becomes_part_of_the_script(value: str) -> None:
    argv = shell_command("printf '%s' \"<v>\" <v> '<v>'", {"v": value})
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == ["banish", value.replace("\0", "\ufffd")]
    if value not in ("", "\\", "'", '"', "!!", "~!", "-rf", "\\'"):  # too short to tell
        assert value not in argv[2]


def injections(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"$(touch {c})",
        f"`touch {c}`",
        f"; touch {c}",
        f"\ntouch {c}",
        f"' ; touch {c} ; '",
        f'" ; touch {c} ; "',
        f"\\' ; touch {c} ; \\'",
        f"$(touch${{IFS}}{c})",
        f"|| touch {c}",
        f"&& touch {c}",
        f"> {c}",
        f"'\"`touch {c}`\"'",
        f"$'\\n'touch {c}",
    ]


# Quoting a scanner might misjudge, broken scripts included: any guess may cost exactness,
# never execution. (A double-quoted string handed to another shell is the documented
# exception; it is not here.)
ANY_CONTEXTS = [
    *(script for script, _ in EXACT_CONTEXTS),
    "printf '%s' '<v>'",
    "printf '%s' \"`printf '%s' \\\"<v>\\\"`\"",
    "printf '%s' `printf '%s' <v>`",
    "printf '%s' $'a<v>b'",
    "printf '%s' \"${x:-<v>}\"",
    "cat <<EOF\n<v>\nEOF",
    "cat <<'EOF'\n<v>\nEOF",
    "printf '%s' \"<v>",
    "printf '%s' '<v>",
    "printf '%s' <v>)",
    "case x in x) printf '%s' <v>;; esac",
    "awk 'BEGIN { print \"<v>\" }' </dev/null",
]


@pytest.mark.parametrize("shell", SHELLS)
def test_hostile_values_never_run_in_any_context(shell: str, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    ran = 0
    for script in ANY_CONTEXTS:
        for value in injections(canary):
            run(shell_command(script, {"v": value}, shell=shell))
            ran += 1
            assert not canary.exists(), (script, value)
    assert ran == len(ANY_CONTEXTS) * len(injections(canary))
    # the canary is real: the same command pasted as text would have run
    run([shell, "-c", f"printf '%s' {injections(canary)[0]}"])
    assert canary.exists()


def test_nul_cannot_reach_an_argument() -> None:
    argv = shell_command("printf '%s' \"<v>\"", {"v": "a\0b\0"})
    assert all("\0" not in a for a in argv)
    assert run(argv).stdout == "a\ufffdb\ufffd".encode()


def test_undecodable_log_bytes_pass_through() -> None:
    raw = b"user\xff\xfe"
    value = raw.decode("utf-8", "surrogateescape")
    assert run(shell_command("printf '%s' \"<v>\"", {"v": value})).stdout == raw


def test_huge_values_are_cut_instead_of_failing_the_command() -> None:
    value = "x" * 300_000
    done = run(shell_command("printf '%s' \"<v>\" | wc -c", {"v": value}))
    assert done.returncode == 0
    assert int(done.stdout) <= MAX_VALUE_BYTES
    done = run(shell_command("printf '%s' \"<v>\"", {"v": value}))
    assert done.stdout.endswith(b"...[truncated by banish]")
    small = "y" * 1000
    assert run(shell_command("printf '%s' \"<v>\"", {"v": small})).stdout == small.encode()


def test_several_tags_no_recursion_unknown_tags_untouched() -> None:
    script = 'printf \'%s|%s|%s|%s\' "<matches>" "<F-USER>" "<ip>" "<F_USER>"'
    values = {"matches": "<F-USER>", "F-USER": "root'", "F_USER": "other", "unused": "zzz"}
    argv = shell_command(script, values)
    assert "zzz" not in argv
    assert run(argv).stdout == b"<F-USER>|root'|<ip>|other"


def test_more_than_nine_values() -> None:
    values = {f"t{i}": f"v{i}'" for i in range(12)}
    script = "printf '%s ' " + " ".join(f'"<t{i}>"' for i in range(12))
    assert run(shell_command(script, values)).stdout == b"".join(
        f"v{i}' ".encode() for i in range(12)
    )


def test_without_values_the_script_is_run_as_is() -> None:
    assert shell_command("echo <ip>", {}) == ["/bin/sh", "-c", "echo <ip>"]
    assert shell_command("echo <ip>", {"matches": "m"}) == ["/bin/sh", "-c", "echo <ip>"]


def test_tag_names_are_checked() -> None:
    with pytest.raises(ValueError, match="tag name"):
        shell_command("echo <a b>", {"a b": "x"})
    with pytest.raises(ValueError, match="tag name"):
        shell_command("echo <>", {"": "x"})


@pytest.mark.skipif(shutil.which("env") is None, reason="needs env(1)")
def test_values_are_exported_for_nested_shells_only_under_their_variable() -> None:
    argv = shell_command("env | grep '^banish_' ; true <v>", {"v": "$(id)"})
    assert run(argv).stdout == b"banish_v=$(id)\n"
