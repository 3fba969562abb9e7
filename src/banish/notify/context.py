"""An action's context: which bans it tells about, and when it keeps quiet. Pure.

Owns the meaning of ``on=`` (the event kind of one ban: a ban from another fleet node is
``fleet``, not ``ban``), ``minbantime`` (a permanent ban always passes), ``repeat`` (repeat
offenders only), ``jails=``, and quiet hours (local time; a window may wrap midnight). Must not
read the clock: ``now`` is an argument.
"""

from __future__ import annotations

import time

from ..config.notify import NotifyContext
from ..events import Ban, EventKind

_LOCAL_ORIGINS = frozenset({"", "fail2ban"})
"""Origins that are this host's own decisions (an import of fail2ban's bans included)."""


def kind_of(kind: EventKind, ban: Ban) -> str:
    """The context's name for what happened to ``ban``."""
    if kind is EventKind.BAN:
        return "ban" if ban.origin in _LOCAL_ORIGINS else "fleet"
    return str(kind.value)


def accepts(context: NotifyContext, kind: str, ban: Ban) -> bool:
    if kind not in context.kinds:
        return False
    if context.jails and ban.jail not in context.jails:
        return False
    if context.minbantime and 0 <= ban.bantime < context.minbantime:
        return False
    return ban.ban_count >= context.repeat or kind not in ("ban", "fleet")


def quiet_until(context: NotifyContext, now: float) -> float | None:
    """The end of the quiet hours ``now`` falls in (epoch seconds), or None when not quiet."""
    if context.quiet is None:
        return None
    start, end = context.quiet
    local = time.localtime(now)
    minute = local.tm_hour * 60 + local.tm_min
    inside = start <= minute < end if start <= end else (minute >= start or minute < end)
    if not inside or start == end:
        return None
    left = (end - minute) % 1440
    return now - local.tm_sec - (now % 1) + left * 60
