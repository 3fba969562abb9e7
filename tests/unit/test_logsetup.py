"""The terminal echo of banish's log: on a tty the lines show there too, logtarget keeps them
all, a reload's re-setup keeps the echo, and a stream target is never written twice."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from banish.daemon import logsetup


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    logsetup.echo_to_terminal(io.StringIO())  # not a tty: echo off
    root = logging.getLogger("banish")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def test_a_terminal_gets_the_lines_and_the_file_keeps_them(tmp_path: Path) -> None:
    term = Tty()
    assert logsetup.echo_to_terminal(term)
    logfile = tmp_path / "banish.log"
    logsetup.setup_logging(str(logfile))
    logging.getLogger("banish.server").info("banish is ready")
    # A reload that changes logtarget sets logging up again: the echo stays.
    logsetup.setup_logging(str(tmp_path / "other.log"))
    logging.getLogger("banish.server").info("reloaded")
    assert "banish is ready" in logfile.read_text()
    assert "reloaded" in (tmp_path / "other.log").read_text()
    shown = term.getvalue()
    assert "banish.server" in shown and "banish is ready" in shown and "reloaded" in shown
    assert not term.closed


def test_no_terminal_no_echo(tmp_path: Path) -> None:
    assert not logsetup.echo_to_terminal(io.StringIO())
    logsetup.setup_logging(str(tmp_path / "banish.log"))
    assert len(logging.getLogger("banish").handlers) == 1


def test_a_stream_target_is_not_doubled(capsys: pytest.CaptureFixture[str]) -> None:
    term = Tty()
    logsetup.echo_to_terminal(term)
    logsetup.setup_logging("STDERR")
    logging.getLogger("banish.server").info("once")
    assert term.getvalue() == ""
    assert capsys.readouterr().err.count("once") == 1
