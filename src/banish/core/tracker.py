"""Failure windows per address: counts failures within ``findtime`` and says when to ban.

The window of an address holds its failures no older than ``findtime`` before its latest
failure (a failure exactly ``findtime`` old still counts). Reaching ``maxretry`` failures
removes the address and returns its matched lines: after a ban the count starts over.

Memory is bounded three ways, because a botnet spraying from a million addresses is exactly
when banish must not fall over:

* at most ``max_tracked`` addresses; those whose last failure arrived longest ago go first;
* per address at most ``maxretry - 1`` times and ``maxmatches`` lines;
* at most ``max_match_chars`` characters of matched lines over all addresses; beyond that the
  lines of the least recently active addresses are dropped (their failures still count, their
  ban just carries fewer lines).

An address with a single failure costs its dict slot and one float; a window object is only
made for a second failure. Measured with 1M distinct IPv4 addresses failing once each, one
~110-character sshd line per failure (CPython 3.11, x86-64), total process RSS: 137 MB with
``maxmatches = 0``, 200 MB with the default line budget, 319 MB with an unlimited one.

Owns: ``FailureTracker``, ``Tally``.
Must not: read the clock, know about ignore lists, ban times or jails.
"""

from __future__ import annotations

from itertools import islice
from typing import Final, NamedTuple

DEFAULT_MAX_TRACKED: Final = 1_000_000
"""Default of the jail option ``maxtracked``."""
DEFAULT_MAX_MATCH_CHARS: Final = 32 * 1024 * 1024
"""Default of the jail option ``maxmatchchars``."""

_EMPTY: Final[tuple[float, ...]] = ()
_NO_LINES: Final[tuple[str, ...]] = ()

# Kept lines: one line is stored as the bare string (a 1-tuple would cost 48 more bytes).
_Lines = str | tuple[str, ...]


class Tally(NamedTuple):
    """The state of an address after a failure was added."""

    failures: int
    """Failures in the window, including the new one."""
    latest: float
    """Time of the address's latest failure (the ban starts here)."""
    matches: tuple[str, ...] | None
    """None below maxretry; the kept lines (oldest first) when maxretry was reached."""


class _Window:
    """Two or more counted failures: ``earlier`` (sorted) and ``last``."""

    __slots__ = ("earlier", "last")

    def __init__(self, last: float, earlier: tuple[float, ...]) -> None:
        self.last = last
        self.earlier = earlier


def _as_tuple(lines: _Lines | None) -> tuple[str, ...]:
    if lines is None:
        return _NO_LINES
    return (lines,) if isinstance(lines, str) else lines


def _size(lines: _Lines) -> int:
    return len(lines) if isinstance(lines, str) else sum(map(len, lines))


class FailureTracker:
    """Per-address failure counting for one jail.

    ``add`` returns a ``Tally``; its ``matches`` are set (and the address forgotten) exactly
    when the address reached ``maxretry``. Addresses are kept in the order their last failure
    arrived, which makes eviction and ``expire`` cheap scans from the front.
    """

    def __init__(
        self,
        *,
        maxretry: int,
        findtime: float,
        maxmatches: int,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        max_match_chars: int = DEFAULT_MAX_MATCH_CHARS,
    ) -> None:
        if maxretry < 1 or findtime <= 0 or maxmatches < 0 or max_tracked < 1:
            raise ValueError("need maxretry, max_tracked >= 1, findtime > 0, maxmatches >= 0")
        self.maxretry = maxretry
        self.findtime = findtime
        self.maxmatches = maxmatches
        self.max_tracked = max_tracked
        self.max_match_chars = max(0, max_match_chars)
        self.evicted = 0
        """Addresses dropped because ``max_tracked`` was reached (not by expiry)."""
        self.trimmed = 0
        """Addresses whose lines were dropped because ``max_match_chars`` was reached."""
        self._windows: dict[str, float | _Window] = {}
        self._lines: dict[str, _Lines] = {}
        self._chars = 0

    def __len__(self) -> int:
        return len(self._windows)

    def __contains__(self, address: object) -> bool:
        return address in self._windows

    @property
    def match_chars(self) -> int:
        """Characters of matched lines currently kept (bounded by ``max_match_chars``)."""
        return self._chars

    def count(self, address: str) -> int:
        """Failures currently counted for ``address`` (0 if not tracked)."""
        w = self._windows.get(address)
        if w is None:
            return 0
        return len(w.earlier) + 1 if isinstance(w, _Window) else 1

    def matches(self, address: str) -> tuple[str, ...]:
        """The lines currently kept for ``address``, oldest first."""
        return _as_tuple(self._lines.get(address))

    def _merge(self, old: _Lines | None, new: tuple[str, ...]) -> _Lines | None:
        keep = self.maxmatches
        if not keep or (old is None and not new):
            return old if keep else None
        joined = _as_tuple(old) + new if old is not None else new
        if len(joined) > keep:
            joined = joined[-keep:]
        return joined[0] if len(joined) == 1 else joined

    def add(self, address: str, time: float, lines: tuple[str, ...] = (), weight: int = 1) -> Tally:
        """Count ``weight`` failures of ``address`` at ``time``; see the class docstring.

        ``weight`` > 1 makes one failure count several times (``bantime.increment`` does this
        for known offenders). A failure older than ``findtime`` before the address's latest
        failure arrives too late to count, but does not disturb the window.
        """
        windows = self._windows
        time = float(time)
        w = windows.pop(address, None)
        if w is None:
            if weight >= self.maxretry:
                return Tally(weight, time, _as_tuple(self._merge(None, lines)))
            if len(windows) >= self.max_tracked:
                self._evict()
            windows[address] = time if weight == 1 else _Window(time, (time,) * (weight - 1))
            self._store(address, self._merge(None, lines))
            return Tally(weight, time, None)

        if isinstance(w, _Window):
            last, earlier = w.last, w.earlier
        else:
            last, earlier = w, _EMPTY
        latest = last if last >= time else time
        cutoff = latest - self.findtime
        times = [t for t in earlier if t >= cutoff]
        if last >= cutoff:
            times.append(last)
        kept = self._lines.pop(address, None)
        if kept is not None:
            self._chars -= _size(kept)
        if time >= cutoff:
            if not times:
                kept = None  # every earlier failure expired: so did its lines
            times.extend((time,) * weight)
            kept = self._merge(kept, lines)
        count = len(times)
        if count >= self.maxretry:
            return Tally(count, latest, _as_tuple(kept))
        if count == 1:
            windows[address] = times[0]
        else:
            times.sort()
            windows[address] = _Window(times[-1], tuple(times[:-1]))
        self._store(address, kept)
        return Tally(count, latest, None)

    def _store(self, address: str, lines: _Lines | None) -> None:
        if lines is None:
            return
        self._lines[address] = lines
        self._chars += _size(lines)
        if self._chars > self.max_match_chars:
            self._trim()

    def _trim(self) -> None:
        # Drop down to 15/16 of the budget in one pass, so a spray of new addresses trims once
        # per many failures instead of on every one.
        target = self.max_match_chars - self.max_match_chars // 16
        victims: list[str] = []
        for address, lines in self._lines.items():
            victims.append(address)
            self._chars -= _size(lines)
            if self._chars <= target:
                break
        for address in victims:
            del self._lines[address]
        self.trimmed += len(victims)

    def _drop(self, address: str) -> None:
        lines = self._lines.pop(address, None)
        if lines is not None:
            self._chars -= _size(lines)

    def forget(self, address: str) -> bool:
        """Drop an address's window (after a manual ban or unban); True if it was tracked."""
        self._drop(address)
        return self._windows.pop(address, None) is not None

    def expire(self, now: float) -> int:
        """Drop windows whose latest failure is older than ``findtime`` at ``now``.

        Scans from the least recently updated address and stops at the first live one, so a
        call costs about the number of windows it drops. A window that arrived out of time
        order may survive a call; it can no longer cause a ban, and a later call or the cap
        removes it.
        """
        cutoff = now - self.findtime
        dead: list[str] = []
        for address, w in self._windows.items():
            if (w.last if isinstance(w, _Window) else w) >= cutoff:
                break
            dead.append(address)
        for address in dead:
            del self._windows[address]
            self._drop(address)
        return len(dead)

    def _evict(self) -> None:
        # One iterator for the whole batch: popping the front of a dict one key at a time
        # rescans the deleted slots every time and turns eviction quadratic.
        victims = list(islice(self._windows, max(1, self.max_tracked // 16)))
        for address in victims:
            del self._windows[address]
            self._drop(address)
        self.evicted += len(victims)
