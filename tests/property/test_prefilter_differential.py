"""The fast path changes nothing: prefiltered results equal processing every line.

Seeded realistic logs (bench/gen_logs.py) run through each filter twice — once with the
prefilter and session skipping, once line by line through the full matcher — and every line's
verdict, host and time must be the same. Covers banish's own filters and, when installed,
fail2ban's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from banish.cli.logfile import chunks_with_candidates
from banish.config.filterdef import load_filter
from banish.match.chunks import ChunkMatcher, Prescanned
from banish.match.filter import CompiledFilter
from banish.paths import packaged_config_dir

ROOT = Path(__file__).resolve().parents[2]
NOW = 1795562019.0  # the generated logs' dates lie before this
CASES = [
    ("auth.log", "sshd", {}),
    ("auth.log", "sshd", {"mode": "aggressive"}),
    ("mail.log", "postfix", {}),
    ("mail.log", "postfix", {"mode": "aggressive"}),
    ("mail.log", "dovecot", {}),
    ("nginx-error.log", "nginx-http-auth", {}),
    ("nginx-access.log", "nginx-botsearch", {}),
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_logs.py"), "--lines", "20000",
                    "--seed", "11", "--out", str(out), "--jobs", "1"], check=True,
                   capture_output=True)
    return out


def _verdicts(flt_args: tuple[str, str, dict[str, str]], data: bytes, fast: bool,
              helper: Path | None = None) -> list[tuple[int, str | None, float | None]]:
    """Failures per line: ``fast`` with the prefilter; ``helper``, a file holding ``data``,
    read through cli/logfile.py's forked helper in small chunks (its prescan, lean lists)."""
    config, name, opts = flt_args
    matcher = ChunkMatcher(CompiledFilter(load_filter(config, name, opts)), use_prefilter=fast)
    if helper is None:
        outcomes = matcher.feed(data, NOW)
    else:
        outcomes = (o for chunk, found in chunks_with_candidates(
            str(helper), matcher.prescan, min_bytes=0, size=64_000)
            for o in matcher.feed(chunk, NOW, found))
    out = []
    for outcome in outcomes:
        hit = outcome.result.failure
        if hit is not None:
            out.append((outcome.index, hit.fid, hit.time))
    return out


@pytest.mark.parametrize("config", [packaged_config_dir(), "/etc/fail2ban"])
@pytest.mark.parametrize(("log", "name", "opts"), CASES)
def test_prefilter_equals_full_matching(logs: Path, config: str, log: str, name: str,
                                        opts: dict[str, str]) -> None:
    if not os.path.isfile(os.path.join(config, "filter.d", name + ".conf")):
        pytest.skip(f"no {name} filter in {config}")
    data = (logs / log).read_bytes()
    fast = _verdicts((config, name, opts), data, True)
    slow = _verdicts((config, name, opts), data, False)
    assert fast == slow
    assert _verdicts((config, name, opts), data, True, helper=logs / log) == slow
    if name in ("sshd", "dovecot"):
        assert len(fast) > 50, "the generated log should hold attacks for this filter"


def test_closing_line_completes_a_pending_session() -> None:
    """A host-less failure waits in its session; the closing line names the host.

    The closing line matches only a NOFAIL+FORGET regex, which the fast path may skip only when
    its session is not open — here it is open, so skipping it would lose the failure.
    """
    if not os.path.isfile("/etc/fail2ban/filter.d/sshd.conf"):
        pytest.skip("fail2ban's sshd filter is not installed")
    lines = [
        "Jan 22 00:00:01 web01 sshd[4242]: Accepted publickey for bob from 198.51.100.3 port 1 ssh2",
        "Jan 22 00:00:02 web01 sshd[100]: Disconnecting: Too many authentication failures [preauth]",
        "Jan 22 00:00:03 web01 sshd[4243]: Connection closed by 198.51.100.4 port 2 [preauth]",
        "Jan 22 00:00:04 web01 sshd[100]: Connection closed by 203.0.113.9 port 22 [preauth]",
    ]
    data = ("\n".join(lines) + "\n").encode()
    args = ("/etc/fail2ban", "sshd", {})
    fast = _verdicts(args, data, True)
    assert [(i, fid) for i, fid, _ in fast] == [(3, "203.0.113.9")]
    assert fast == _verdicts(args, data, False)


def test_lean_list_gives_way_when_a_session_id_is_not_bracketed(tmp_path: Path) -> None:
    """The helper drops closing lines whose ``[digits]`` no earlier line held; while a
    session with another kind of id is open, those lines count again."""
    (tmp_path / "filter.d").mkdir()
    (tmp_path / "filter.d" / "app.conf").write_text(
        "[Definition]\n"
        "prefregex = ^<F-MLFID>\\S+ \\S+</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\n"
        "failregex = ^fail(?: from <HOST>)?$\n"
        "            ^<F-NOFAIL><F-MLFFORGET>closed</F-MLFFORGET></F-NOFAIL> from <HOST>$\n"
        "datepattern = {NONE}\n")
    flt = CompiledFilter(load_filter(str(tmp_path), "app", {}))
    lines = [b"srv app[101]: fail from 192.0.2.1",
             b"srv app(202): fail",
             b"srv app(202): closed from 192.0.2.2",
             b"srv app[303]: closed from 192.0.2.3"]
    chunk = b"\n".join(lines) + b"\n"
    matcher = ChunkMatcher(flt)
    found = matcher.prescan(chunk)
    assert found.lean is not None and len(found.candidates) == 4
    assert [chunk[s:e] for s, e, _ in found.lean] == lines[:2]  # both closers: unknown [ids]
    def run(matcher: ChunkMatcher, given: Prescanned | None
            ) -> tuple[list[str], list[tuple[str | None, float | None]]]:
        outcomes = list(matcher.feed(chunk, NOW, given))
        return [o.text for o in outcomes], [(o.result.failure.fid, o.result.failure.time)
                                            for o in outcomes if o.result.failure is not None]

    def fresh(fast: bool = True) -> ChunkMatcher:
        return ChunkMatcher(CompiledFilter(load_filter(str(tmp_path), "app", {})),
                            use_prefilter=fast)

    seen, failures = run(fresh(), found)
    # app(202) opened a session whose id is not [digits]: its closing line was looked at
    # (and named the host of its pending failure); app[303] never opened one.
    assert seen == [line.decode() for line in lines[:3]]
    assert failures == run(fresh(fast=False), None)[1] == [
        ("192.0.2.1", None), ("192.0.2.2", None)]
