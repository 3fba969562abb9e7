"""Host names the firewall must know: ``ignoreip`` names and friends, kept resolved.

Owns looking names up (at start, then every ``ignoreresolve`` seconds), what each name stands
for now, and the rules that keep a lookup from doing harm: a failed lookup keeps the last
known addresses (a DNS provider being down must not lock the owner out); an answer with more
than ``MAX_ADDRESSES`` addresses, or with the unspecified address (0.0.0.0, ::, which would
stand for everyone), is refused with a warning and the last addresses stay. The runtime puts
the addresses in the jails' ignore lists and the kernel allow sets, and in friends-only
services. ``getaddrinfo`` tells no TTL, so names are looked up on the interval only.
Must not touch the firewall or the jails itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..addr import IPNetwork, canonical_address

log = logging.getLogger("banish.server")

MAX_ADDRESSES = 64
LOOKUP_TIMEOUT = 5.0

Lookup = Callable[[str], Awaitable[list[str]]]


async def getaddrinfo_lookup(name: str) -> list[str]:
    """The system resolver's addresses for ``name`` (IPv4 and IPv6), canonical, in order."""
    infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(name, None),
                                   LOOKUP_TIMEOUT)
    out: list[str] = []
    for info in infos:
        address = canonical_address(str(info[4][0]))
        if address is not None and address not in out:
            out.append(address)
    return out


@dataclass(slots=True)
class NameState:
    name: str
    addresses: frozenset[str] = frozenset()
    resolved_at: float | None = None
    """When ``addresses`` were last confirmed by an answer."""
    tried_at: float | None = None
    error: str = ""
    """Why the last lookup was not used ("" when it was)."""


class Resolver:
    """The names in use and what they stand for; `refresh` looks up the ones due."""

    def __init__(self, interval: float, lookup: Lookup = getaddrinfo_lookup) -> None:
        self.interval = interval
        self._lookup = lookup
        self._names: dict[str, NameState] = {}

    def track(self, names: Iterable[str]) -> list[str]:
        """The names in use from now on (after a start or reload); known ones keep their
        addresses. Returns the names not known before (to look up at once)."""
        wanted = dict.fromkeys(n.lower() for n in names)
        new = [n for n in wanted if n not in self._names]
        self._names = {n: self._names.get(n) or NameState(n) for n in wanted}
        return new

    def due(self, now: float) -> list[str]:
        return [s.name for s in self._names.values()
                if s.tried_at is None or now - s.tried_at >= self.interval]

    async def refresh(self, now: float, names: Iterable[str] | None = None) -> bool:
        """Look up ``names`` (default: the ones due), all at once; True if any name now
        stands for other addresses than before."""
        todo = [n for n in (self.due(now) if names is None else names) if n in self._names]
        if not todo:
            return False
        answers = await asyncio.gather(*(self._lookup(n) for n in todo), return_exceptions=True)
        changed = False
        for name, answer in zip(todo, answers, strict=True):
            changed |= self._record(self._names[name], answer, now)
        return changed

    def _record(self, state: NameState, answer: list[str] | BaseException, now: float) -> bool:
        state.tried_at = now
        problem = _refusal(answer)
        if problem is not None:
            if problem != state.error:
                kept = (f"keeping {', '.join(sorted(state.addresses))}" if state.addresses
                        else "it stands for no address yet")
                log.warning("Host name %s: %s; %s", state.name, problem, kept)
            state.error = problem
            return False
        assert not isinstance(answer, BaseException)
        if state.error:
            log.info("Host name %s resolves again", state.name)
        state.error = ""
        state.resolved_at = now
        addresses = frozenset(answer)
        if addresses == state.addresses:
            return False
        if state.addresses:
            log.info("Host name %s now stands for %s (was %s)", state.name,
                     ", ".join(sorted(addresses)), ", ".join(sorted(state.addresses)))
        state.addresses = addresses
        return True

    def addresses(self, name: str) -> frozenset[str]:
        state = self._names.get(name.lower())
        return state.addresses if state is not None else frozenset()

    def networks(self, names: Iterable[str]) -> tuple[IPNetwork, ...]:
        """The current addresses of ``names`` as host networks, for an allow set."""
        out: dict[IPNetwork, None] = {}
        for name in names:
            for address in sorted(self.addresses(name)):
                out[ipaddress.ip_network(address)] = None
        return tuple(out)

    def status(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "addresses": sorted(s.addresses), "resolved_at": s.resolved_at,
                 "tried_at": s.tried_at, "error": s.error} for s in self._names.values()]


def _refusal(answer: list[str] | BaseException) -> str | None:
    """Why a lookup's answer is not used, or None."""
    if isinstance(answer, TimeoutError):
        return f"lookup timed out after {LOOKUP_TIMEOUT:g}s"
    if isinstance(answer, OSError):
        return f"lookup failed ({answer.strerror or answer})"
    if isinstance(answer, BaseException):
        return f"lookup failed ({type(answer).__name__}: {answer})"
    if not answer:
        return "no address in the answer"
    if len(answer) > MAX_ADDRESSES:
        return (f"resolves to {len(answer)} addresses (more than {MAX_ADDRESSES}): refused, "
                "a name standing for that many hosts is no friend")
    if any(ipaddress.ip_address(a).is_unspecified for a in answer):
        return "resolves to the unspecified address (0.0.0.0 or ::, everyone): refused"
    return None
