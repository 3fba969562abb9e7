"""nftables backend: bans are elements of kernel sets in one ``inet banish`` table.

Owns deciding and sending the transactions -- one ``nft -j -f -`` process per call, calls
serialized by one lock -- the kernel questions asked once (does adding again extend a
timeout?), and which sets exist. The JSON itself, the grouping of bans into sets and the
reading of listings are `nftpayload`'s. Must not touch any other table, run one process per
ban, or keep ban state of its own: the kernel expires timed bans, and the only thing
remembered between calls is which sets exist.

Layout (all in ``table inet banish``)::

    chain input    hook input,   priority -1:
                   [l4proto/ports of service S] ip saddr != @S-friends4 drop   (friends-only,
                   [l4proto/ports of service S] ip6 saddr != @S-friends6 drop   first)
                   [l4proto/ports of jail J] jump jail-J
    chain forward  hook forward, priority -1 (only if a jail filters forwarded traffic)
    chain jail-J   ip saddr @J-allow4 return; ip6 saddr @J-allow6 return;
                   ip saddr @J-v4 <drop|reject>; ip6 saddr @J-v6 ...; ip saddr @J-v4-24 ...

A friends-only service guards the host's own ports (the input hook). It is not applied to
forwarded traffic: there a rule on a destination port would also cut off connections that
containers make to that port elsewhere (a ``git`` over SSH), unless it matched only DNATed
packets; that needs a per-service switch the configuration does not have.

`start` reshapes in one transaction (see `nftpayload.skeleton`): allow and friends sets are
flushed and refilled -- never deleted and created again, which lets packets slip past a set
while the transaction commits -- and ban sets keep their members, so a friend whose address
changes from A to B meets a ruleset allowing A or one allowing B, and no ban is lost. A `start` with
the same jails, services and lists as the last one (in any order) sends nothing at all.

Bans are kept in one set per (jail, IP version, prefix length): hosts in ``J-v4``/``J-v6``
(hash sets with timeouts), networks in ``J-v4-24``, ``J-v6-64``... (interval sets, created on
first use). nftables refuses overlapping intervals in one set, so a single mixed set could
not hold 10.0.0.0/24 together with 10.0.0.5 or 10.0.0.0/16; prefixes of one length never
overlap, so every combination of bans fits, each with its own timeout.

Idempotence within one all-or-nothing transaction: ``add element`` of an existing element
succeeds, so "add X, delete X" removes X whether or not it was there, and "add X, delete X,
add X timeout T" sets a fresh timeout. Older kernels keep the old timeout of an element that
is added again, hence the three steps; they cost twice the time of one ``add`` at 100,000
bans, so `start` asks the kernel once (a scratch set) whether adding again extends the
timeout, and if it does a new ban is a single ``add``. Even then a new ban cannot shorten
an element left over from a failed unban or added by hand (nor time a permanent one); such
drift errs towards banning and `reconcile` corrects it.

Bans travel as their canonical address text from ``Ban`` to the JSON (see `nftpayload`), never
as ``ipaddress`` objects: `ban` of 100,000 bans (30% IPv6) into a fresh set inside a network
namespace took 0.87-0.99 s (medians of two sessions, 5-6 runs each, 2 cores) this way, against
1.26-1.65 s through ``BanEntry`` objects; the Python side alone is 0.2 s against 0.6-0.9 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from banish.actions import nftpayload as p
from banish.actions.base import BackendError, FriendsOnly, JailFirewall, Shape
from banish.actions.tools import netns_prefix, run_tool
from banish.events import Ban, BanKey

log = logging.getLogger(__name__)

_REBUILD_OVER = 64
"""Lifting more networks of one set than this rebuilds the set (see `_rebuilt_without`)."""

_PROBE_SET = "timeout-probe"
_PROBE_ADDR = "192.0.2.0"  # TEST-NET-1, only ever an element of the scratch set
_PROBE_KEY = p.SetKey("probe", 4, 32)


class NftablesBackend:
    """Bans in nftables sets; see the module docstring for the layout.

    ``netns`` runs every ``nft`` inside that network namespace (``ip netns exec``), which is
    how the tests keep away from the host's ruleset. ``forward`` filters forwarded traffic
    for every jail (a jail can also ask for it alone). ``slack`` is how far (seconds) the
    kernel's time left may drift from the daemon's before `reconcile` rewrites it;
    ``timeout`` bounds one nft run. Calls are serialized (one lock): each reads or changes
    the whole table.
    """

    def __init__(
        self,
        *,
        netns: str | None = None,
        forward: bool = False,
        nft: str = "nft",
        slack: float = 5.0,
        timeout: float = 60.0,
    ) -> None:
        self._argv = [*netns_prefix(netns), nft]
        self._forward = forward
        self._slack = slack
        self._timeout = timeout
        self._jails: dict[str, JailFirewall] = {}
        self._services: dict[str, FriendsOnly] = {}
        self._shape: Shape | None = None
        """What the last successful `start` built; None before it and after `stop`."""
        self._sets: set[p.SetKey] = set()
        self._lock = asyncio.Lock()
        self._add_extends: bool | None = None
        """Whether adding an element again extends its timeout (asked once, in `start`)."""

    # -- the Backend protocol --

    async def start(self, jails: Sequence[JailFirewall],
                    friends: Sequence[FriendsOnly] = ()) -> None:
        shape = Shape.of(jails, friends)
        async with self._lock:
            if shape == self._shape:
                log.debug("nftables: jails, friends-only services and lists unchanged")
                return
            listing = await self._read(elements=False)
            keep = {k for k in p.existing_keys(listing, shape.jails) if not k.host}
            commands, keys = p.skeleton(shape.jails, listing, keep, forward_all=self._forward,
                                        services=shape.services)
            await self._apply(commands)
            self._jails, self._services, self._sets = shape.jails, shape.services, keys
            self._shape = shape
            if self._add_extends is None:
                self._add_extends = await self._probe_add_extends()

    async def ban(self, bans: Sequence[Ban], now: float) -> None:
        # Grouped and encoded before taking the lock: a caller that sends a big batch in
        # slices has the next one ready while nft applies this one.
        grouped = p.group(bans, now)
        p.plain_addresses(grouped)
        self._check_jails(k.jail for k in grouped)
        elements: list[p.Json | str] = []
        refresh: list[p.SetKey] = []  # network sets on an old kernel: see below
        for key, elems in sorted(grouped.items()):
            if not self._add_extends:
                if not key.host:
                    refresh.append(key)
                    continue
                elements += [
                    p.elements_text("add", key, elems, with_timeouts=False),
                    p.elements_text("delete", key, elems, with_timeouts=False),
                ]
            elements.append(p.elements_text("add", key, elems))
        async with self._lock:
            self._check_jails(k.jail for k in grouped)  # a reload may have dropped a jail
            new = sorted(set(grouped) - self._sets)
            commands: list[p.Json | str] = []
            for key in new:
                commands += [p.ban_set_def(key), p.ban_rule(key, self._jails[key.jail])]
            for key in refresh:
                elements += await self._refresh_networks(key, grouped[key], key in new)
            await self._apply(commands + elements)
            self._sets.update(new)

    async def _refresh_networks(self, key: p.SetKey, elems: p.Elements, new: bool
                                ) -> list[str]:
        """The three-step refresh for a network set, deleting only what it holds: nft's
        interval handling makes deleting absent networks slow beyond measure (5,000 /24s took
        5.5 s, 50,000 over a minute), where reading the set first costs a listing."""
        present: set[int] = set()
        if not new:
            present = {found for found, _, _ in await self._list_set(key) if found is not None}
        there = {a: t for a, t in elems.items() if p.number(key.version, a) in present}
        out = []
        if there:
            out.append(p.elements_text("delete", key, there, with_timeouts=False))
        out.append(p.elements_text("add", key, elems))
        return out

    async def unban(self, keys: Sequence[BanKey]) -> None:
        grouped = p.group_keys(keys)
        p.plain_addresses(grouped)
        async with self._lock:
            self._check_jails(k.jail for k in grouped)
            commands: list[p.Json | str] = []
            for key, elems in sorted(grouped.items()):
                if key not in self._sets:  # no set, nothing of that shape was ever banned
                    continue
                if not key.host and len(elems) > _REBUILD_OVER:
                    commands += await self._rebuilt_without(key, elems)
                    continue
                commands += [
                    p.elements_text("add", key, elems, with_timeouts=False),
                    p.elements_text("delete", key, elems, with_timeouts=False),
                ]
            await self._apply(commands)

    async def _rebuilt_without(self, key: p.SetKey, gone: Collection[str]) -> list[p.Json]:
        """A network set emptied and filled again with what stays, each with the time it had
        left: nft deletes intervals in time that grows with the set times the batch (5,000
        /24s took 30 s to lift), while filling a set is quick. One transaction, so no packet
        ever sees the set empty."""
        lifted = {p.number(key.version, text) for text in gone}
        keep: list[Any] = []
        for found, expires, raw in await self._list_set(key):
            if found is None or found in lifted:
                continue
            if expires is None:
                keep.append(raw)
            elif expires > 0:
                keep.append(p.timed(raw, max(1, math.ceil(expires))))
        flush = {"flush": p.obj("set", name=key.name)}
        return [flush, p.elements("add", key.name, keep)] if keep else [flush]

    async def reconcile(self, active: Sequence[Ban], now: float) -> None:
        desired = p.group(active, now)
        p.plain_addresses(desired)
        async with self._lock:
            self._check_jails(k.jail for k in desired)
            listing = await self._read(elements=True)
            commands, keys = p.skeleton(self._jails, listing, set(desired),
                                        forward_all=self._forward, services=self._services)
            removals: list[p.Json | str] = []
            additions: list[p.Json | str] = []
            for key in sorted(keys):
                have = listing.sets.get(key.name, []) if listing else []
                gone, fresh = p.diff(key, have, desired.get(key, {}), self._slack)
                if gone:
                    removals += [
                        p.elements("add", key.name, gone),
                        p.elements("delete", key.name, gone),
                    ]
                if fresh:
                    additions.append(p.elements_text("add", key, fresh))
            await self._apply([*commands, *removals, *additions])
            self._sets = keys

    async def stop(self) -> None:
        async with self._lock:
            # "add" first makes "delete" succeed even if someone already removed the table.
            await self._apply([{"add": p.table()}, {"delete": p.table()}])
            self._jails, self._services, self._sets, self._shape = {}, {}, set(), None

    # -- checks and questions --

    def _check_jails(self, jails: Iterable[str]) -> None:
        unknown = set(jails) - self._jails.keys()
        if unknown:
            raise ValueError(f"jails not started in the firewall: {', '.join(sorted(unknown))}")

    async def _probe_add_extends(self) -> bool:
        """Add a scratch element for 1 s, add it again for an hour, and look: on kernels
        that keep the first timeout it is gone or nearly so. Any failure answers False
        (the three-step refresh is right everywhere)."""
        probe = p.obj("set", name=_PROBE_SET, type="ipv4_addr", flags=["timeout"])
        try:
            await self._apply([
                {"add": probe}, {"delete": probe}, {"add": probe},
                p.elements("add", _PROBE_SET, [p.timed(_PROBE_ADDR, 1)]),
                p.elements("add", _PROBE_SET, [p.timed(_PROBE_ADDR, 3600)]),
            ])
            left = [expires for _, expires, _ in await self._list_set(_PROBE_KEY, _PROBE_SET)]
            await self._apply([{"delete": probe}])
        except (BackendError, ValueError, KeyError) as exc:
            log.debug("timeout probe failed, using the three-step refresh: %s", exc)
            return False
        extends = bool(left) and all(t is not None and t > 60 for t in left)
        log.debug("adding an nftables element again %s its timeout",
                  "extends" if extends else "does not extend")
        return extends

    # -- the one I/O seam --

    async def _read(self, *, elements: bool) -> p.Listing | None:
        """The table as it is, or None if it does not exist.

        nft 1.0 loads every set element for any listing, even of table names (about 1 s per
        100,000), so the table is listed directly and only a failure asks whether it exists.
        """
        terse = [] if elements else ["-t"]
        try:
            return p.parse_listing(
                await self._nft(["-j", *terse, "list", "table", p.FAMILY, p.TABLE]))
        except BackendError:
            tables = json.loads(await self._nft(["-j", "list", "tables", p.FAMILY]))
            if any(o.get("table", {}).get("name") == p.TABLE for o in tables["nftables"]):
                raise
            return None

    async def _list_set(self, key: p.SetKey, name: str | None = None
                        ) -> list[tuple[int | None, float | None, Any]]:
        """The elements of one set (``key.name`` unless ``name``): a single set's listing,
        not the whole table's."""
        listed = await self._nft(["-j", "list", "set", p.FAMILY, p.TABLE, name or key.name])
        return p.parse_set(listed, key)

    async def _apply(self, commands: Sequence[p.Json | str]) -> None:
        """One transaction, all or nothing."""
        if not commands:
            return
        data = p.payload(commands)
        log.debug("nft transaction: %d commands, %d bytes", len(commands), len(data))
        await self._nft(["-j", "-f", "-"], data)

    async def _nft(self, args: list[str], stdin: bytes | None = None) -> bytes:
        return await run_tool([*self._argv, *args], stdin, self._timeout)
