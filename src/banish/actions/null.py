"""The null backend: logs what it would enforce and changes nothing.

Owns nothing but log lines. For dry runs (``banaction = null``), machines where another tool
owns the firewall, and tests of the daemon. Must not touch the firewall or keep ban state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from banish.actions.base import BanEntry, JailFirewall

log = logging.getLogger(__name__)


def _describe(entry: BanEntry) -> str:
    until = "permanently" if entry.expires_in is None else f"for {entry.expires_in:g}s"
    return f"{entry.jail} {entry.address} {until}"


class NullBackend:
    """Accepts every call and only logs it (one line per call, not per ban, when batches are big)."""

    uses_details = False

    _DETAIL_LIMIT = 10

    async def start(self, jails: Sequence[JailFirewall]) -> None:
        log.info("null firewall: start jails %s", ", ".join(j.name for j in jails) or "(none)")

    async def ban(self, bans: Sequence[BanEntry]) -> None:
        self._log("ban", bans)

    async def unban(self, bans: Sequence[BanEntry]) -> None:
        self._log("unban", bans)

    async def reconcile(self, active: Sequence[BanEntry]) -> None:
        log.info("null firewall: reconcile %d active bans", len(active))

    async def stop(self) -> None:
        log.info("null firewall: stop")

    def _log(self, verb: str, entries: Sequence[BanEntry]) -> None:
        if not entries:
            return
        shown = "; ".join(_describe(e) for e in entries[: self._DETAIL_LIMIT])
        more = len(entries) - self._DETAIL_LIMIT
        suffix = f"; and {more} more" if more > 0 else ""
        log.info("null firewall: %s %s%s", verb, shown, suffix)
