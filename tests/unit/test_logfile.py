"""Reading whole log files for the offline tools: the same chunks and the same verdicts with
the forked prefilter helper as without it, and a file that shrinks or a helper that fails
costs nothing but the speed-up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from banish.cli import logfile
from banish.cli.logfile import chunks_with_candidates, file_chunks
from banish.cli.main import main
from banish.config.filterdef import load_filter
from banish.match.chunks import ChunkMatcher, Prescanned
from banish.match.filter import CompiledFilter
from banish.paths import packaged_config_dir

SSHD = [
    "Jan 22 10:00:0{s} web01 sshd[4{n:03d}]: Failed password for root from 198.51.100.{n} port 22 ssh2",
    "Jan 22 10:00:0{s} web01 sshd[4{n:03d}]: Connection closed by 198.51.100.{n} port 22 [preauth]",
    "Jan 22 10:00:0{s} web01 CRON[77]: pam_unix(cron:session): session opened for user root",
    "Jan 22 10:00:0{s} web01 sshd[4{n:03d}]: Invalid user admin from 203.0.113.{n} port 4022",
]


def _log(path: Path, lines: int, tail: bool = True) -> Path:
    text = "\n".join(SSHD[i % 4].format(s=i % 10, n=i % 250) for i in range(lines))
    path.write_text(text + ("\n" if tail else ""))
    return path


def _matcher() -> ChunkMatcher:
    matcher = ChunkMatcher(CompiledFilter(load_filter(packaged_config_dir(), "sshd", {})))
    assert matcher.prefilter is not None
    return matcher


@pytest.mark.parametrize("tail", [True, False])
def test_helper_gives_the_chunks_and_findings_of_an_in_process_prescan(tmp_path: Path,
                                                                       tail: bool) -> None:
    log = _log(tmp_path / "auth.log", 3000, tail)
    helped = list(chunks_with_candidates(str(log), _matcher().prescan, min_bytes=0,
                                         size=16_000))
    alone = list(file_chunks(str(log), size=16_000))
    assert [chunk for chunk, _ in helped] == alone and len(alone) > 5
    here = _matcher()
    for chunk, found in helped:
        assert found == here.prescan(chunk)
        assert found.newlines == chunk.count(b"\n") and found.lean is not None
        assert set(found.lean) <= set(found.candidates)
    assert sum(len(f.lean) for _, f in helped if f and f.lean) < sum(
        len(f.candidates) for _, f in helped if f)  # closing lines of unknown ids dropped


def test_small_files_no_prefilter_and_one_cpu_get_no_helper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _log(tmp_path / "auth.log", 50)
    assert [f for _, f in chunks_with_candidates(str(log), _matcher().prescan)] == [None]
    assert [f for _, f in chunks_with_candidates(str(log), None, min_bytes=0)] == [None]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert [f for _, f in chunks_with_candidates(str(log), _matcher().prescan,
                                                 min_bytes=0)] == [None]


def test_a_failing_helper_leaves_the_rest_to_the_caller(tmp_path: Path) -> None:
    log = _log(tmp_path / "auth.log", 3000)
    matcher, parent, calls = _matcher(), os.getpid(), [0]

    def prescan(chunk: bytes) -> Prescanned:  # breaks in the forked helper only
        calls[0] += 1
        if os.getpid() != parent and calls[0] > 2:
            raise RuntimeError("helper broke")
        return matcher.prescan(chunk)

    helped = list(chunks_with_candidates(str(log), prescan, min_bytes=0, size=16_000))
    assert b"".join(chunk for chunk, _ in helped) == log.read_bytes()  # every line, once
    assert all(chunk.endswith(b"\n") for chunk, _ in helped)
    assert [found is not None for _, found in helped][:3] == [True, True, False]


def test_a_file_that_shrinks_while_read_ends_cleanly(tmp_path: Path) -> None:
    log = _log(tmp_path / "auth.log", 3000)
    seen = []
    for chunk, _ in chunks_with_candidates(str(log), _matcher().prescan, min_bytes=0,
                                           size=16_000):
        seen.append(chunk)
        if len(seen) == 2:
            os.truncate(log, 100)  # copytruncate rotation in the middle of the run
    assert len(seen) >= 2 and all(chunk.endswith(b"\n") for chunk in seen[:2])


def test_regex_json_is_the_same_with_and_without_the_helper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path / "auth.log", 4000)
    argv = ["regex", "--json", "--now", "1795562019", str(log), "sshd"]
    assert main(argv) == 0
    alone = capsys.readouterr().out
    monkeypatch.setattr(logfile, "PRESCAN_MIN_BYTES", 0)
    monkeypatch.setattr(logfile, "CHUNK_BYTES", 20_000)
    monkeypatch.setattr(logfile.chunks_with_candidates, "__kwdefaults__",
                        {"min_bytes": 0, "size": 20_000})
    assert main(argv) == 0
    helped = capsys.readouterr().out
    assert helped == alone
    rows = [json.loads(line) for line in alone.splitlines()]
    assert len(rows) == 4000 and sum(r["match"] for r in rows) > 1000
