"""The null backend: logs what it would enforce and changes nothing.

Owns nothing but log lines. For dry runs (``banaction = null``), machines where another tool
owns the firewall, and tests of the daemon. Must not touch the firewall or keep ban state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from banish.actions.base import FriendsOnly, JailFirewall, Port
from banish.events import Ban, BanKey

log = logging.getLogger(__name__)

_DETAIL_LIMIT = 10


def _describe(ban: Ban, now: float) -> str:
    left = ban.remaining(now)
    until = "permanently" if left is None else f"for {left:g}s"
    return f"{ban.jail} {ban.address} {until}"


class NullBackend:
    """Accepts every call and only logs it (one line per call, not per ban, when batches are big)."""

    async def start(self, jails: Sequence[JailFirewall],
                    friends: Sequence[FriendsOnly] = ()) -> None:
        log.info("null firewall: start jails %s", ", ".join(j.name for j in jails) or "(none)")
        for service in friends:
            log.info("null firewall: friends-only %s (%s ports %s) from %s", service.name,
                     service.protocol, ",".join(map(_port, service.ports)),
                     " ".join(map(str, service.friends)) or "nobody")

    async def ban(self, bans: Sequence[Ban], now: float) -> None:
        current = [b for b in bans if b.remaining(now) != 0]  # a ban already over is skipped
        _log("ban", len(current), [_describe(b, now) for b in current[:_DETAIL_LIMIT]])

    async def unban(self, keys: Sequence[BanKey]) -> None:
        _log("unban", len(keys), [f"{k.jail} {k.address}" for k in keys[:_DETAIL_LIMIT]])

    async def reconcile(self, active: Sequence[Ban], now: float) -> None:
        log.info("null firewall: reconcile %d active bans",
                 sum(1 for ban in active if ban.remaining(now) != 0))

    async def stop(self) -> None:
        log.info("null firewall: stop")


def _port(port: Port) -> str:
    return f"{port[0]}-{port[1]}" if isinstance(port, tuple) else str(port)


def _log(verb: str, total: int, described: Sequence[str]) -> None:
    """One line for a whole call: the first few bans, and how many more."""
    if not total:
        return
    shown = "; ".join(described)
    more = total - len(described)
    suffix = f"; and {more} more" if more > 0 else ""
    log.info("null firewall: %s %s%s", verb, shown, suffix)
