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

from banish.config.filterdef import load_filter
from banish.match.chunks import ChunkMatcher
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


def _verdicts(flt_args: tuple[str, str, dict[str, str]], data: bytes, fast: bool) -> list[tuple[int, str | None, float | None]]:
    config, name, opts = flt_args
    matcher = ChunkMatcher(CompiledFilter(load_filter(config, name, opts)), use_prefilter=fast)
    out = []
    for outcome in matcher.feed(data, NOW):
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
