"""nftables backend: bans are elements of kernel sets in one ``inet banish`` table.

Owns that table's layout, the JSON transactions it sends through one ``nft -j -f -`` process
per call, and the parsing of ``nft -j list``. Must not touch any other table, run one process
per ban, or keep ban state of its own: the kernel expires timed bans, and the only thing
remembered between calls is which sets exist.

Layout (all in ``table inet banish``)::

    chain input    hook input,   priority -1: [l4proto/ports of jail J] jump jail-J
    chain forward  hook forward, priority -1 (only if a jail filters forwarded traffic)
    chain jail-J   ip saddr @J-allow4 return; ip6 saddr @J-allow6 return;
                   ip saddr @J-v4 <drop|reject>; ip6 saddr @J-v6 ...; ip saddr @J-v4-24 ...

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
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, TypeAlias

from banish.actions.base import BackendError, BanEntry, JailFirewall, Network, Port, jails_by_name

log = logging.getLogger(__name__)

FAMILY = "inet"
TABLE = "banish"
PRIORITY = -1
"""Just before the usual filter chains (priority 0), as fail2ban's nftables action does."""

_L4_WITH_PORTS = ("tcp", "udp", "sctp", "udplite")
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_NETWORKS = (IPv4Network, IPv6Network)
_HOST_LEN = {4: 32, 6: 128}

Json: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True, order=True)
class _SetKey:
    """One ban set: the bans of one jail, IP version and prefix length."""

    jail: str
    version: int
    prefixlen: int

    @property
    def host(self) -> bool:
        return self.prefixlen == _HOST_LEN[self.version]

    @property
    def name(self) -> str:
        base = f"{self.jail}-v{self.version}"
        return base if self.host else f"{base}-{self.prefixlen}"


def _host_keys(jail: str) -> list[_SetKey]:
    return [_SetKey(jail, 4, 32), _SetKey(jail, 6, 128)]


def _allow_name(jail: str, version: int) -> str:
    return f"{jail}-allow{version}"


def _chain_name(jail: str) -> str:
    return f"jail-{jail}"


@dataclass(slots=True)
class _Listing:
    """The table as nft lists it; set elements stay raw JSON until a set is compared."""

    chains: set[str] = field(default_factory=set)
    sets: dict[str, list[Any]] = field(default_factory=dict)


# --- JSON building blocks (libnftables-json(5)) ------------------------------------------------


def _obj(kind: str, **props: Any) -> Json:
    return {kind: {"family": FAMILY, "table": TABLE, **props}}


def _val(version: int, prefixlen: int, number: int) -> Any:
    """An element value for the address (or network address) ``number``.

    Elements are handled as integers: ``str()`` and hashing of ipaddress objects cost more
    than everything else a batch of 100,000 bans does; inet_ntop/inet_pton are C.
    """
    text = socket.inet_ntop(_AF[version], number.to_bytes(_HOST_LEN[version] // 8, "big"))
    if prefixlen == _HOST_LEN[version]:
        return text
    return {"prefix": {"addr": text, "len": prefixlen}}


def _net_val(net: Network) -> Any:
    return _val(net.version, net.prefixlen, int(net.network_address))


def _timed(val: Any, timeout: int | None) -> Any:
    return val if timeout is None else {"elem": {"val": val, "timeout": timeout}}


def _elements(cmd: str, set_name: str, elems: list[Any]) -> Json:
    return {cmd: _obj("element", name=set_name, elem=elems)}


_Elems: TypeAlias = Mapping[int, int | None] | Mapping[str, int | None]
"""A set's elements: {address as integer, or as checked text: timeout or None}."""


def _elements_text(cmd: str, key: _SetKey, elems: _Elems, *, timed: bool = True) -> str:
    """``_elements`` for {address: timeout}, already encoded as JSON text; an address is an
    integer, or the text of one (a network's address without its length) checked by
    `_plain_addresses`.

    The hot path of a big batch: json.dumps of 100,000 small dicts costs more than nft's
    whole transaction, and the values here need no escaping (inet_ntop writes hex digits,
    dots and colons; the set name goes through json.dumps). tests/unit/test_nft_payload.py
    holds it equal to the dict form."""
    ntop, af, size = socket.inet_ntop, _AF[key.version], _HOST_LEN[key.version] // 8
    texts = [a if isinstance(a, str) else ntop(af, a.to_bytes(size, "big")) for a in elems]
    if key.host:
        vals = [f'"{a}"' for a in texts]
    else:
        plen = key.prefixlen
        vals = [f'{{"prefix":{{"addr":"{a}","len":{plen}}}}}' for a in texts]
    if timed:
        vals = [v if t is None else f'{{"elem":{{"val":{v},"timeout":{t}}}}}'
                for v, t in zip(vals, elems.values(), strict=True)]
    return (f'{{"{cmd}":{{"element":{{"family":"{FAMILY}","table":"{TABLE}",'
            f'"name":{json.dumps(key.name)},"elem":[{",".join(vals)}]}}}}}}')


_PLAIN_ADDRESSES = re.compile(r"[0-9a-f.:/\n]*")


def _plain_addresses(texts: Sequence[str]) -> None:
    """Refuse any text that is not made of what canonical addresses are made of, so that
    `_elements_text` may paste it into JSON unescaped (one C pass over the whole batch)."""
    joined = "\n".join(texts)
    if not _PLAIN_ADDRESSES.fullmatch(joined) or joined.count("\n") != max(len(texts) - 1, 0):
        bad = next(t for t in texts if not _PLAIN_ADDRESSES.fullmatch(t) or "\n" in t)
        raise ValueError(f"not a canonical address: {bad!r}")


def _group_texts(jail: str, bans: Iterable[tuple[str, float | None]]
                 ) -> dict[_SetKey, dict[str, int | None]]:
    """`_group` for canonical address texts: {set: {address text: timeout}}."""
    out: dict[_SetKey, dict[str, int | None]] = {}
    v4, v6 = _SetKey(jail, 4, 32), _SetKey(jail, 6, 128)
    ceil = math.ceil
    for text, left in bans:
        if "/" in text:
            text, _, length = text.partition("/")
            key = _SetKey(jail, 6 if ":" in text else 4, int(length))
        else:
            key = v6 if ":" in text else v4
        per_set = out.get(key)
        if per_set is None:
            per_set = out[key] = {}
        timeout = None if left is None else max(1, ceil(left))
        per_set[text] = _longer(per_set[text], timeout) if text in per_set else timeout
    return out


def _match(left: Json, right: Any) -> Json:
    return {"match": {"op": "==", "left": left, "right": right}}


def _saddr(version: int) -> Json:
    return {"payload": {"protocol": "ip" if version == 4 else "ip6", "field": "saddr"}}


def _rule(chain: str, *expr: Json) -> Json:
    return {"add": _obj("rule", chain=chain, expr=list(expr))}


def _ports(ports: tuple[Port, ...]) -> Any:
    items: list[Any] = [
        {"range": list(p)} if isinstance(p, tuple) else p for p in sorted(set(ports), key=_first)
    ]
    return items[0] if len(items) == 1 else {"set": items}


def _first(port: Port) -> int:
    return port[0] if isinstance(port, tuple) else port


def _jump(jail: JailFirewall, *, forwarded: bool) -> Json:
    """The base-chain rule that sends a jail's traffic to its chain.

    On the forward path the port is the one the client asked for before DNAT (conntrack's
    original tuple): that is the port Docker publishes and the one a jail is configured with.
    """
    expr: list[Json] = []
    l4: Any = {"set": list(_L4_WITH_PORTS)} if jail.protocol == "all" else jail.protocol
    if jail.protocol != "all" or jail.ports:
        expr.append(_match({"meta": {"key": "l4proto"}}, l4))
    if jail.ports:
        port: Json = (
            {"ct": {"key": "proto-dst", "dir": "original"}}
            if forwarded
            else {"payload": {"protocol": "th", "field": "dport"}}
        )
        expr.append(_match(port, _ports(jail.ports)))
    expr.append({"jump": {"target": _chain_name(jail.name)}})
    return _rule("forward" if forwarded else "input", *expr)


def _base_chain(hook: str) -> Json:
    return {
        "add": _obj("chain", name=hook, type="filter", hook=hook, prio=PRIORITY, policy="accept")
    }


def _set_def(name: str, version: int, flags: list[str]) -> Json:
    kind = "ipv4_addr" if version == 4 else "ipv6_addr"
    return {"add": _obj("set", name=name, type=kind, flags=flags)}


def _ban_set_def(key: _SetKey) -> Json:
    return _set_def(key.name, key.version, ["timeout"] if key.host else ["interval", "timeout"])


def _ban_rule(key: _SetKey, jail: JailFirewall) -> Json:
    verdict: Json = {jail.blocktype: None}
    return _rule(_chain_name(key.jail), _match(_saddr(key.version), "@" + key.name), verdict)


def _collapsed(nets: Iterable[object], version: int) -> list[Network]:
    """Overlapping allow entries merged: an interval set refuses overlaps (ignoreip often
    lists both 127.0.0.1 and 127.0.0.0/8)."""
    if version == 4:
        return list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv4Network)))
    return list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv6Network)))


def _longer(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def _group(entries: Iterable[BanEntry]) -> dict[_SetKey, dict[int, int | None]]:
    """Bans by set, each as {address as integer: timeout}; a duplicate keeps its longest ban."""
    out: dict[tuple[str, int, int], dict[int, int | None]] = {}
    hosts: dict[tuple[str, type], dict[int, int | None]] = {}  # the same dicts, by host type
    ceil = math.ceil
    for entry in entries:  # the hot loop of a big batch: plain tuples, ints, no properties
        addr = entry.address
        per_set = hosts.get((entry.jail, type(addr)))
        if per_set is not None:
            number = int(addr)  # type: ignore[arg-type]  # a host: its type was looked up
        else:
            if isinstance(addr, _NETWORKS):
                plen, number = addr.prefixlen, int(addr.network_address)
            else:
                plen, number = _HOST_LEN[addr.version], int(addr)
            per_set = out.setdefault((entry.jail, addr.version, plen), {})
            if plen == _HOST_LEN[addr.version]:
                hosts[entry.jail, type(addr)] = per_set
        left = entry.expires_in
        timeout = None if left is None else max(1, ceil(left))
        per_set[number] = _longer(per_set[number], timeout) if number in per_set else timeout
    return {_SetKey(*key): elems for key, elems in out.items()}


# --- parsing ``nft -j list`` ---------------------------------------------------------------------


def _parse_listing(text: bytes) -> _Listing:
    listing = _Listing()
    for obj in json.loads(text)["nftables"]:
        if "chain" in obj:
            listing.chains.add(obj["chain"]["name"])
        elif "set" in obj:
            listing.sets[obj["set"]["name"]] = obj["set"].get("elem", [])
    return listing


def _parse_element(key: _SetKey, item: Any) -> tuple[int | None, float | None, Any]:
    """(address as integer or None if not of this set's shape, time left or None, raw value)."""
    expires: float | None = None
    val = item
    if isinstance(item, dict) and "elem" in item:
        val = item["elem"]["val"]
        if "timeout" in item["elem"]:
            expires = float(item["elem"].get("expires", item["elem"]["timeout"]))
    text = val
    if isinstance(val, dict) and "prefix" in val:
        text = val["prefix"]["addr"] if val["prefix"]["len"] == key.prefixlen else None
    elif not key.host:
        text = None  # a plain address (or a range) in a prefix set: not banish's shape
    try:
        number = int.from_bytes(socket.inet_pton(_AF[key.version], text), "big")
    except (TypeError, OSError):
        return None, expires, val
    return number, expires, val


@contextmanager
def _memory_file(data: bytes | None) -> Iterator[int]:
    """A descriptor reading ``data`` from the start (/dev/null for None), closed on exit."""
    if data is None:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    else:
        fd = os.memfd_create("banish-nft", os.MFD_CLOEXEC)
    try:
        if data:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


_REBUILD_OVER = 64
"""Lifting more networks of one set than this rebuilds the set (see `_rebuilt_without`)."""

_PROBE_SET = "timeout-probe"
_PROBE_ADDR = "192.0.2.0"  # TEST-NET-1, only ever an element of the scratch set
_PROBE_KEY = _SetKey("probe", 4, 32)


# --- the backend ---------------------------------------------------------------------------------


class NftablesBackend:
    """Bans in nftables sets; see the module docstring for the layout.

    ``netns`` runs every ``nft`` inside that network namespace (``ip netns exec``), which is
    how the tests keep away from the host's ruleset. ``forward`` filters forwarded traffic
    for every jail (a jail can also ask for it alone). ``slack`` is how far (seconds) the
    kernel's time left may drift from the daemon's before `reconcile` rewrites it;
    ``timeout`` bounds one nft run. Calls are serialized (one lock): each reads or changes
    the whole table.
    """

    uses_details = False

    def __init__(
        self,
        *,
        netns: str | None = None,
        forward: bool = False,
        nft: str = "nft",
        slack: float = 5.0,
        timeout: float = 60.0,
    ) -> None:
        self._argv = (["ip", "netns", "exec", netns] if netns else []) + [nft]
        self._forward = forward
        self._slack = slack
        self._timeout = timeout
        self._jails: dict[str, JailFirewall] = {}
        self._sets: set[_SetKey] = set()
        self._lock = asyncio.Lock()
        self._add_extends: bool | None = None
        """Whether adding an element again extends its timeout (asked once, in `start`)."""

    # -- the Backend protocol --

    async def start(self, jails: Sequence[JailFirewall]) -> None:
        async with self._lock:
            by_name = jails_by_name(jails)
            listing = await self._read(elements=False)
            keep = {k for k in self._existing_keys(listing, by_name) if not k.host}
            commands, keys = self._skeleton(by_name, listing, keep)
            await self._apply(commands)
            self._jails, self._sets = by_name, keys
            if self._add_extends is None:
                self._add_extends = await self._probe_add_extends()

    async def ban(self, bans: Sequence[BanEntry]) -> None:
        self._check_jails(bans)
        await self._ban_grouped(_group(bans), {e.jail for e in bans})

    async def ban_texts(self, jail: str, bans: Sequence[tuple[str, float | None]]) -> None:
        """`ban` for one jail's bans as (canonical address text, seconds left or None): see
        `TextBans`. Texts that are not plain address characters are refused (ValueError)."""
        if jail not in self._jails:
            raise ValueError(f"jails not started in the firewall: {jail}")
        for _, left in bans:
            if left is not None and not (math.isfinite(left) and left > 0):
                raise ValueError(f"ban in {jail}: seconds left must be positive, not {left!r}")
        _plain_addresses([text for text, _ in bans])
        await self._ban_grouped(_group_texts(jail, bans), {jail})

    async def _ban_grouped(self, grouped: Mapping[_SetKey, _Elems], jails: set[str]) -> None:
        # The elements are encoded before taking the lock: a caller that sends a big batch in
        # slices has the next one ready while nft applies this one.
        elements: list[Json | str] = []
        refresh: list[_SetKey] = []  # network sets on an old kernel: see below
        for key, elems in sorted(grouped.items()):
            if not self._add_extends:
                if not key.host:
                    refresh.append(key)
                    continue
                elements += [
                    _elements_text("add", key, elems, timed=False),
                    _elements_text("delete", key, elems, timed=False),
                ]
            elements.append(_elements_text("add", key, elems))
        async with self._lock:
            missing = jails - self._jails.keys()  # a reload may have dropped a jail meanwhile
            if missing:
                raise ValueError(f"jails not started in the firewall: {', '.join(sorted(missing))}")
            new = sorted(set(grouped) - self._sets)
            commands: list[Json | str] = []
            for key in new:
                commands += [_ban_set_def(key), _ban_rule(key, self._jails[key.jail])]
            for key in refresh:
                elements += await self._refresh_networks(key, grouped[key], key in new)
            await self._apply(commands + elements)
            self._sets.update(new)

    async def _refresh_networks(self, key: _SetKey, elems: _Elems, new: bool) -> list[str]:
        """The three-step refresh for a network set, deleting only what it holds: nft's
        interval handling makes deleting absent networks slow beyond measure (5,000 /24s took
        5.5 s, 50,000 over a minute), where reading the set first costs a listing."""
        present: set[int] = set()
        if not new:
            present = {number for number, _, _ in await self._list_set(key) if number is not None}
        af = _AF[key.version]
        there: dict[Any, int | None] = {
            a: t for a, t in elems.items()
            if (a if isinstance(a, int) else int.from_bytes(socket.inet_pton(af, a), "big"))
            in present}
        out = []
        if there:
            out.append(_elements_text("delete", key, there, timed=False))
        out.append(_elements_text("add", key, elems))
        return out

    async def unban(self, bans: Sequence[BanEntry]) -> None:
        async with self._lock:
            self._check_jails(bans)
            commands: list[Json | str] = []
            for key, elems in sorted(_group(bans).items()):
                if key not in self._sets:  # no set, nothing of that shape was ever banned
                    continue
                if not key.host and len(elems) > _REBUILD_OVER:
                    commands += await self._rebuilt_without(key, elems)
                    continue
                commands += [
                    _elements_text("add", key, elems, timed=False),
                    _elements_text("delete", key, elems, timed=False),
                ]
            if commands:
                await self._apply(commands)

    async def _rebuilt_without(self, key: _SetKey, gone: Mapping[int, int | None]) -> list[Json]:
        """A network set emptied and filled again with what stays, each with the time it had
        left: nft deletes intervals in time that grows with the set times the batch (5,000
        /24s took 30 s to lift), while filling a set is quick. One transaction, so no packet
        ever sees the set empty."""
        keep: list[Any] = []
        for number, expires, raw in await self._list_set(key):
            if number is None or number in gone:
                continue
            if expires is None:
                keep.append(raw)
            elif expires > 0:
                keep.append(_timed(raw, max(1, math.ceil(expires))))
        flush = {"flush": _obj("set", name=key.name)}
        return [flush, _elements("add", key.name, keep)] if keep else [flush]

    async def _list_set(self, key: _SetKey, name: str | None = None
                        ) -> list[tuple[int | None, float | None, Any]]:
        """The elements of one set (``key.name`` unless ``name``) as `_parse_element` reads
        them: a single set's listing, not the whole table's."""
        listed = json.loads(await self._nft(["-j", "list", "set", FAMILY, TABLE,
                                             name or key.name]))
        return [_parse_element(key, item) for obj in listed["nftables"]
                for item in obj.get("set", {}).get("elem", [])]

    async def reconcile(self, active: Sequence[BanEntry]) -> None:
        async with self._lock:
            self._check_jails(active)
            listing = await self._read(elements=True)
            desired = _group(active)
            commands, keys = self._skeleton(self._jails, listing, set(desired))
            removals: list[Json | str] = []
            additions: list[Json | str] = []
            for key in sorted(keys):
                have = listing.sets.get(key.name, []) if listing else []
                gone, fresh = self._diff(key, have, desired.get(key, {}))
                if gone:
                    removals += [
                        _elements("add", key.name, gone),
                        _elements("delete", key.name, gone),
                    ]
                if fresh:
                    additions.append(_elements_text("add", key, fresh))
            await self._apply([*commands, *removals, *additions])
            self._sets = keys

    async def stop(self) -> None:
        async with self._lock:
            # "add" first makes "delete" succeed even if someone already removed the table.
            table = {"table": {"family": FAMILY, "name": TABLE}}
            await self._apply([{"add": table}, {"delete": table}])
            self._jails, self._sets = {}, set()

    # -- planning --

    def _check_jails(self, entries: Iterable[BanEntry]) -> None:
        unknown = {e.jail for e in entries} - self._jails.keys()
        if unknown:
            raise ValueError(f"jails not started in the firewall: {', '.join(sorted(unknown))}")

    def _existing_keys(
        self, listing: _Listing | None, jails: dict[str, JailFirewall]
    ) -> set[_SetKey]:
        keys: set[_SetKey] = set()
        if listing is None:
            return keys
        for jail in jails:
            pattern = re.compile(re.escape(jail) + r"-v([46])(?:-(\d{1,3}))?")
            for name in listing.sets:
                m = pattern.fullmatch(name)
                if m:
                    version = int(m[1])
                    plen = int(m[2]) if m[2] else _HOST_LEN[version]
                    if 0 <= plen <= _HOST_LEN[version]:
                        keys.add(_SetKey(jail, version, plen))
        return keys

    def _skeleton(
        self,
        jails: dict[str, JailFirewall],
        listing: _Listing | None,
        wanted: set[_SetKey],
    ) -> tuple[list[Json], set[_SetKey]]:
        """Commands that (re)build table, chains, allow sets and rules in one transaction.

        Every existing chain is flushed first, so no rule references a set or chain any more
        and the obsolete ones can be deleted; ban sets in ``wanted`` (plus every jail's host
        sets) keep their elements because ``add set`` on an existing set changes nothing.
        Allow sets are recreated so they hold exactly the configured addresses.
        """
        keys = {k for k in wanted if k.jail in jails}
        for name in jails:
            keys.update(_host_keys(name))
        forwarded = [j for j in jails.values() if j.forward or self._forward]
        chains = {"input", *([_chain_name(j) for j in jails])}
        if forwarded:
            chains.add("forward")
        ban_sets = {k.name for k in keys}

        commands: list[Json] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
        old_chains = listing.chains if listing else set()
        old_sets = set(listing.sets) if listing else set()
        commands += [{"flush": _obj("chain", name=c)} for c in sorted(old_chains)]
        commands += [{"delete": _obj("chain", name=c)} for c in sorted(old_chains - chains)]
        commands += [{"delete": _obj("set", name=s)} for s in sorted(old_sets - ban_sets)]

        commands.append(_base_chain("input"))
        if forwarded:
            commands.append(_base_chain("forward"))
        for jail in jails.values():
            commands.append({"add": _obj("chain", name=_chain_name(jail.name))})
            for version in (4, 6):
                allow = _allow_name(jail.name, version)
                commands.append(_set_def(allow, version, ["interval"]))
                nets = _collapsed(jail.allow, version)
                if nets:
                    commands.append(_elements("add", allow, [_net_val(n) for n in nets]))
                commands.append(
                    _rule(
                        _chain_name(jail.name),
                        _match(_saddr(version), "@" + allow),
                        {"return": None},
                    )
                )
        for key in sorted(keys):
            commands += [_ban_set_def(key), _ban_rule(key, jails[key.jail])]
        commands += [_jump(j, forwarded=False) for j in jails.values()]
        commands += [_jump(j, forwarded=True) for j in forwarded]
        return commands, keys

    def _diff(
        self, key: _SetKey, have: list[Any], want: dict[int, int | None]
    ) -> tuple[list[Any], dict[int, int | None]]:
        """(values to remove, elements to add) that turn the listed ``have`` into ``want``.

        A wanted element whose time left is off by more than the slack is in both lists.
        """
        gone: list[Any] = []
        kept: set[int] = set()
        for item in have:
            number, expires, raw = _parse_element(key, item)
            if number is None or number not in want or number in kept:
                gone.append(raw)
                continue
            timeout = want[number]
            if (timeout is None) != (expires is None) or (
                timeout is not None and expires is not None and abs(timeout - expires) > self._slack
            ):
                gone.append(raw)
            else:
                kept.add(number)
        return gone, {n: t for n, t in want.items() if n not in kept}

    async def _probe_add_extends(self) -> bool:
        """Add a scratch element for 1 s, add it again for an hour, and look: on kernels
        that keep the first timeout it is gone or nearly so. Any failure answers False
        (the three-step refresh is right everywhere)."""
        probe = _obj("set", name=_PROBE_SET, type="ipv4_addr", flags=["timeout"])
        try:
            await self._apply([
                {"add": probe}, {"delete": probe}, {"add": probe},
                _elements("add", _PROBE_SET, [_timed(_PROBE_ADDR, 1)]),
                _elements("add", _PROBE_SET, [_timed(_PROBE_ADDR, 3600)]),
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

    async def _read(self, *, elements: bool) -> _Listing | None:
        """The table as it is, or None if it does not exist.

        nft 1.0 loads every set element for any listing, even of table names (about 1 s per
        100,000), so the table is listed directly and only a failure asks whether it exists.
        """
        terse = [] if elements else ["-t"]
        try:
            return _parse_listing(await self._nft(["-j", *terse, "list", "table", FAMILY, TABLE]))
        except BackendError:
            tables = json.loads(await self._nft(["-j", "list", "tables", FAMILY]))
            if any(o.get("table", {}).get("name") == TABLE for o in tables["nftables"]):
                raise
            return None

    async def _apply(self, commands: Sequence[Json | str]) -> None:
        """One transaction; a str command is already JSON text (`_elements_text`)."""
        if not commands:
            return
        parts = [c if isinstance(c, str) else json.dumps(c, separators=(",", ":"))
                 for c in commands]
        payload = ('{"nftables":[' + ",".join(parts) + "]}").encode()
        log.debug("nft transaction: %d commands, %d bytes", len(commands), len(payload))
        await self._nft(["-j", "-f", "-"], payload)

    async def _nft(self, args: list[str], stdin: bytes | None = None) -> bytes:
        argv = [*self._argv, *args]
        try:
            # The transaction goes in as an in-memory file, not a pipe: nft reads it at its own
            # pace even while the event loop is busy building the next batch.
            with _memory_file(stdin) as source:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=source, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise BackendError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self._timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            # The kernel applies a batch whole or not at all, so killing nft is safe; a
            # left-over process could otherwise still change the ruleset later.
            proc.kill()
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise BackendError(f"nft {' '.join(args)} hung for {self._timeout:g} s") from None
            raise
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()[:3]
            detail = " / ".join(line.strip()[:300] for line in lines) or "no message"
            raise BackendError(f"nft {' '.join(args)} failed (exit {proc.returncode}): {detail}")
        return out
