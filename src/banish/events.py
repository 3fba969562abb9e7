"""The typed events that cross pipeline stages (sources -> match -> core -> daemon)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line read by a source.

    ``time`` is set only when the source knows it (the journal); otherwise the matcher finds the
    date inside ``text``.
    """

    text: str
    source: str = ""
    time: float | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure the matcher found: who (``fid``, usually an address), when, and why."""

    fid: str
    time: float
    regex_index: int
    lines: tuple[str, ...] = ()
    user: str | None = None
    fields: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
