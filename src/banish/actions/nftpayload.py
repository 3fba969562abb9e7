"""The nftables backend's words: the JSON of its transactions and the reading of nft's listings.

Owns the layout of ``table inet banish`` as data (set and chain names, the skeleton that
builds or reshapes it, set and rule definitions, friends-only services' sets and rules), turning ``Ban``s into per-set element lists
(grouping, time left, the longest of duplicates), writing element lists as JSON text, and
parsing ``nft -j list`` output into what a diff needs. Pure: must not run nft, take a lock or
keep state; `nftables.py` decides what to send and sends it.

Element lists are written as JSON *text*, the address text pasted between quotes: at 100,000
bans, building ``ipaddress`` objects or dicts for ``json.dumps`` costs more than nft's whole
transaction. That is safe only because `plain_addresses` refuses, in one C pass over the whole
batch, any address text holding a character that addresses are not made of (quotes,
backslashes, spaces...), before anything is written. tests/unit/test_nft_payload.py holds the
text equal to the dict form ``json.dumps`` makes.
"""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from banish.actions.base import FriendsOnly, JailFirewall, Network, Port, Transport, collapsed
from banish.events import Ban, BanKey

FAMILY = "inet"
TABLE = "banish"
PRIORITY = -1
"""Just before the usual filter chains (priority 0), as fail2ban's nftables action does."""

HOST_LEN = {4: 32, 6: 128}
_L4_WITH_PORTS = ("tcp", "udp", "sctp", "udplite")
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}

Json: TypeAlias = dict[str, Any]
Elements: TypeAlias = dict[str, int | None]
"""One set's elements: {address text (a network's without its length): timeout or None}."""


@dataclass(frozen=True, slots=True, order=True)
class SetKey:
    """One ban set: the bans of one jail, IP version and prefix length."""

    jail: str
    version: int
    prefixlen: int

    @property
    def host(self) -> bool:
        return self.prefixlen == HOST_LEN[self.version]

    @property
    def name(self) -> str:
        base = f"{self.jail}-v{self.version}"
        return base if self.host else f"{base}-{self.prefixlen}"


def host_keys(jail: str) -> list[SetKey]:
    return [SetKey(jail, 4, 32), SetKey(jail, 6, 128)]


def allow_name(jail: str, version: int) -> str:
    return f"{jail}-allow{version}"


def chain_name(jail: str) -> str:
    return f"jail-{jail}"


def friends_name(service: str, version: int) -> str:
    """The set of a friends-only service's friends. Never a jail's set name, whatever the
    names: a jail's sets end in ``-v4``, ``-v6``, ``-vN-LEN``, ``-allow4`` or ``-allow6``."""
    return f"{service}-friends{version}"


# --- bans to elements ----------------------------------------------------------------------------


def _longer(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def _set_of(jail: str, text: str) -> tuple[SetKey, str]:
    """The set a network's canonical text belongs in, and its address without the length."""
    addr, _, length = text.partition("/")
    version = 6 if ":" in addr else 4
    plen = int(length)
    if not 0 <= plen <= HOST_LEN[version]:
        raise ValueError(f"not a canonical address: {text!r}")
    return SetKey(jail, version, plen), addr


def group(bans: Iterable[Ban], now: float) -> dict[SetKey, Elements]:
    """The bans still running at ``now`` by set, each address with its timeout in whole
    seconds (rounded up: never shorter than asked) or None; a duplicate keeps its longest.

    The hot loop of a big batch: attribute reads, one dict look-up per ban, no objects.
    """
    out: dict[SetKey, Elements] = {}
    hosts: dict[tuple[str, bool], Elements] = {}  # host sets by (jail, is IPv6)
    ceil = math.ceil
    for ban in bans:
        bantime = ban.bantime
        timeout: int | None = None
        if bantime >= 0:
            left = ban.banned_at + bantime - now
            if not left > 0:  # over (or NaN)
                continue
            try:
                timeout = ceil(left)
            except OverflowError:
                raise ValueError(f"ban of {ban.address} in {ban.jail}: no end in sight: "
                                 f"banned at {ban.banned_at!r}") from None
        text = ban.address
        if "/" in text:
            key, text = _set_of(ban.jail, text)
            per_set = out.get(key)
            if per_set is None:
                per_set = out[key] = {}
        else:
            v6 = ":" in text
            per_set = hosts.get((ban.jail, v6))
            if per_set is None:
                key = SetKey(ban.jail, 6, 128) if v6 else SetKey(ban.jail, 4, 32)
                per_set = hosts[ban.jail, v6] = out.setdefault(key, {})
        per_set[text] = _longer(per_set[text], timeout) if text in per_set else timeout
    return out


def group_keys(keys: Iterable[BanKey]) -> dict[SetKey, Elements]:
    """`group` for `unban`: the sets the named bans are in (timeouts do not matter)."""
    out: dict[SetKey, Elements] = {}
    for address, jail in keys:
        if "/" in address:
            key, address = _set_of(jail, address)
        else:
            key = SetKey(jail, 6, 128) if ":" in address else SetKey(jail, 4, 32)
        out.setdefault(key, {})[address] = None
    return out


_PLAIN_ADDRESSES = re.compile(r"[0-9a-f.:]+(?:\n[0-9a-f.:]+)*")


def plain_addresses(grouped: Mapping[SetKey, Elements]) -> None:
    """Refuse (ValueError) any address text that is not made of what canonical addresses are
    made of, so that `elements_text` may paste it into JSON unescaped: one C pass over the
    whole batch. What passes can still be no address ("1.2.3"); nft then refuses the whole
    transaction, which is an error, never an injection."""
    texts = [text for elems in grouped.values() for text in elems]
    if not texts:
        return
    joined = "\n".join(texts)
    if not _PLAIN_ADDRESSES.fullmatch(joined) or joined.count("\n") != len(texts) - 1:
        bad = next(t for t in texts if not _PLAIN_ADDRESSES.fullmatch(t) or "\n" in t)
        raise ValueError(f"not a canonical address: {bad!r}")


def number(version: int, text: str) -> int:
    """An address text as an integer: how a listing and a wish are compared (nft's text and
    banish's canonical text of one address may differ in spelling)."""
    try:
        return int.from_bytes(socket.inet_pton(_AF[version], text), "big")
    except (OSError, ValueError):
        raise ValueError(f"not a canonical address: {text!r}") from None


# --- JSON building blocks (libnftables-json(5)) ------------------------------------------------


def obj(kind: str, **props: Any) -> Json:
    return {kind: {"family": FAMILY, "table": TABLE, **props}}


def value(version: int, prefixlen: int, text: str) -> Any:
    """An element value: the address text, or a prefix for a network set."""
    if prefixlen == HOST_LEN[version]:
        return text
    return {"prefix": {"addr": text, "len": prefixlen}}


def timed(val: Any, timeout: int | None) -> Any:
    return val if timeout is None else {"elem": {"val": val, "timeout": timeout}}


def elements(cmd: str, set_name: str, elems: list[Any]) -> Json:
    return {cmd: obj("element", name=set_name, elem=elems)}


def elements_text(cmd: str, key: SetKey, elems: Mapping[str, int | None], *,
                  with_timeouts: bool = True) -> str:
    """``elements`` for {address text: timeout}, already encoded as JSON text.

    The texts must have passed `plain_addresses` (they are pasted between quotes); the set
    name goes through json.dumps."""
    if key.host:
        vals = [f'"{a}"' for a in elems]
    else:
        plen = key.prefixlen
        vals = [f'{{"prefix":{{"addr":"{a}","len":{plen}}}}}' for a in elems]
    if with_timeouts:
        vals = [v if t is None else f'{{"elem":{{"val":{v},"timeout":{t}}}}}'
                for v, t in zip(vals, elems.values(), strict=True)]
    return (f'{{"{cmd}":{{"element":{{"family":"{FAMILY}","table":"{TABLE}",'
            f'"name":{json.dumps(key.name)},"elem":[{",".join(vals)}]}}}}}}')


def payload(commands: Sequence[Json | str]) -> bytes:
    """One ``nft -j -f`` transaction; a str command is already JSON text (`elements_text`)."""
    parts = [c if isinstance(c, str) else json.dumps(c, separators=(",", ":"))
             for c in commands]
    return ('{"nftables":[' + ",".join(parts) + "]}").encode()


def table() -> Json:
    return {"table": {"family": FAMILY, "name": TABLE}}


def _match(left: Json, right: Any) -> Json:
    return {"match": {"op": "==", "left": left, "right": right}}


def _saddr(version: int) -> Json:
    return {"payload": {"protocol": "ip" if version == 4 else "ip6", "field": "saddr"}}


def _rule(chain: str, *expr: Json) -> Json:
    return {"add": obj("rule", chain=chain, expr=list(expr))}


def _ports(ports: tuple[Port, ...]) -> Any:
    items: list[Any] = [
        {"range": list(p)} if isinstance(p, tuple) else p for p in sorted(set(ports), key=_first)
    ]
    return items[0] if len(items) == 1 else {"set": items}


def _first(port: Port) -> int:
    return port[0] if isinstance(port, tuple) else port


def _service(protocol: Transport, ports: tuple[Port, ...], *, forwarded: bool) -> list[Json]:
    """The matches of a service's packets: protocol (any with ports, for "all") and ports.

    On the forward path the port is the one the client asked for before DNAT (conntrack's
    original tuple): that is the port Docker publishes and the one a jail is configured with.
    """
    expr: list[Json] = []
    l4: Any = {"set": list(_L4_WITH_PORTS)} if protocol == "all" else protocol
    if protocol != "all" or ports:
        expr.append(_match({"meta": {"key": "l4proto"}}, l4))
    if ports:
        port: Json = (
            {"ct": {"key": "proto-dst", "dir": "original"}}
            if forwarded
            else {"payload": {"protocol": "th", "field": "dport"}}
        )
        expr.append(_match(port, _ports(ports)))
    return expr


def _jump(jail: JailFirewall, *, forwarded: bool) -> Json:
    """The base-chain rule that sends a jail's traffic to its chain."""
    return _rule("forward" if forwarded else "input",
                 *_service(jail.protocol, jail.ports, forwarded=forwarded),
                 {"jump": {"target": chain_name(jail.name)}})


def friends_rules(service: FriendsOnly) -> list[Json]:
    """Input-chain rules that drop the service's packets from anyone not a friend, one per IP
    version: an empty set drops every packet of that version, as friends-only means."""
    return [
        _rule("input", *_service(service.protocol, service.ports, forwarded=False),
              {"match": {"op": "!=", "left": _saddr(version),
                         "right": "@" + friends_name(service.name, version)}},
              {"drop": None})
        for version in (4, 6)
    ]


def _base_chain(hook: str) -> Json:
    return {
        "add": obj("chain", name=hook, type="filter", hook=hook, prio=PRIORITY, policy="accept")
    }


def set_def(name: str, version: int, flags: list[str]) -> Json:
    kind = "ipv4_addr" if version == 4 else "ipv6_addr"
    return {"add": obj("set", name=name, type=kind, flags=flags)}


def ban_set_def(key: SetKey) -> Json:
    return set_def(key.name, key.version, ["timeout"] if key.host else ["interval", "timeout"])


def ban_rule(key: SetKey, jail: JailFirewall) -> Json:
    verdict: Json = {jail.blocktype: None}
    return _rule(chain_name(key.jail), _match(_saddr(key.version), "@" + key.name), verdict)


def list_set(name: str, version: int, nets: Iterable[Network], *, existed: bool) -> list[Json]:
    """An interval set of addresses and networks (allow list, friends), overlaps merged,
    holding exactly ``nets`` after the transaction.

    A set that ``existed`` is flushed and refilled, never deleted and created again: in one
    transaction both look the same, but the kernel (6.18) lets a few packets miss a set
    created anew while the transaction commits -- 4 of 27,000 connections of an allowed
    address failed over 150 such transactions, none with flush and refill."""
    commands = [set_def(name, version, ["interval"])]
    if existed:
        commands.append({"flush": obj("set", name=name)})
    vals = [value(version, n.prefixlen, str(n.network_address)) for n in collapsed(nets, version)]
    if vals:
        commands.append(elements("add", name, vals))
    return commands


def skeleton(
    jails: Mapping[str, JailFirewall],
    listing: Listing | None,
    wanted: set[SetKey],
    *,
    forward_all: bool,
    services: Mapping[str, FriendsOnly] | None = None,
) -> tuple[list[Json], set[SetKey]]:
    """Commands that (re)build table, chains, allow and friends sets and rules in one
    transaction, and the ban sets that exist after it.

    Every existing chain is flushed first, so no rule references a set or chain any more
    and the obsolete ones can be deleted; ban sets in ``wanted`` (plus every jail's host
    sets) keep their elements because ``add set`` on an existing set changes nothing.
    Allow and friends sets are flushed and refilled (`list_set`) so they hold exactly the
    configured addresses: nft commits the whole transaction at once, so a packet meets
    either the old lists or the new ones, never a moment without both. Friends-only rules come first in the input
    chain, before any jump to a jail: a stranger is dropped whatever the jails say, and a
    friend goes on to the jails, whose allow sets (holding every friend) return at once.
    """
    services = services or {}
    keys = {k for k in wanted if k.jail in jails}
    for name in jails:
        keys.update(host_keys(name))
    forwarded = [j for j in jails.values() if j.forward or forward_all]
    chains = {"input", *([chain_name(j) for j in jails])}
    if forwarded:
        chains.add("forward")
    lists = {(friends_name(s, v), v): services[s].friends for s in services for v in (4, 6)}
    lists |= {(allow_name(j, v), v): jails[j].allow for j in jails for v in (4, 6)}
    kept_sets = {k.name for k in keys} | {name for name, _ in lists}

    commands: list[Json] = [{"add": table()}]
    old_chains = listing.chains if listing else set()
    old_sets = set(listing.sets) if listing else set()
    commands += [{"flush": obj("chain", name=c)} for c in sorted(old_chains)]
    commands += [{"delete": obj("chain", name=c)} for c in sorted(old_chains - chains)]
    commands += [{"delete": obj("set", name=s)} for s in sorted(old_sets - kept_sets)]

    commands.append(_base_chain("input"))
    if forwarded:
        commands.append(_base_chain("forward"))
    for (name, version), nets in lists.items():
        commands += list_set(name, version, nets, existed=name in old_sets)
    for service in services.values():
        commands += friends_rules(service)
    for jail in jails.values():
        commands.append({"add": obj("chain", name=chain_name(jail.name))})
        for version in (4, 6):
            allow = allow_name(jail.name, version)
            commands.append(
                _rule(chain_name(jail.name), _match(_saddr(version), "@" + allow),
                      {"return": None})
            )
    for key in sorted(keys):
        commands += [ban_set_def(key), ban_rule(key, jails[key.jail])]
    commands += [_jump(j, forwarded=False) for j in jails.values()]
    commands += [_jump(j, forwarded=True) for j in forwarded]
    return commands, keys


# --- reading ``nft -j list`` ---------------------------------------------------------------------


@dataclass(slots=True)
class Listing:
    """The table as nft lists it; set elements stay raw JSON until a set is compared."""

    chains: set[str] = field(default_factory=set)
    sets: dict[str, list[Any]] = field(default_factory=dict)


def parse_listing(text: bytes) -> Listing:
    listing = Listing()
    for item in json.loads(text)["nftables"]:
        if "chain" in item:
            listing.chains.add(item["chain"]["name"])
        elif "set" in item:
            listing.sets[item["set"]["name"]] = item["set"].get("elem", [])
    return listing


def parse_set(text: bytes, key: SetKey) -> list[tuple[int | None, float | None, Any]]:
    """The elements of a one-set listing (``nft -j list set``), as `parse_element` reads them."""
    return [parse_element(key, item) for obj_ in json.loads(text)["nftables"]
            for item in obj_.get("set", {}).get("elem", [])]


def parse_element(key: SetKey, item: Any) -> tuple[int | None, float | None, Any]:
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
        return number(key.version, text), expires, val
    except (TypeError, ValueError):
        return None, expires, val


def existing_keys(listing: Listing | None, jails: Iterable[str]) -> set[SetKey]:
    """The ban sets of ``jails`` the listing shows, by their names."""
    keys: set[SetKey] = set()
    if listing is None:
        return keys
    for jail in jails:
        pattern = re.compile(re.escape(jail) + r"-v([46])(?:-(\d{1,3}))?")
        for name in listing.sets:
            m = pattern.fullmatch(name)
            if m:
                version = int(m[1])
                plen = int(m[2]) if m[2] else HOST_LEN[version]
                if 0 <= plen <= HOST_LEN[version]:
                    keys.add(SetKey(jail, version, plen))
    return keys


def diff(key: SetKey, have: list[Any], want: Elements, slack: float
         ) -> tuple[list[Any], Elements]:
    """(values to remove, elements to add) that turn the listed ``have`` into ``want``.

    A wanted element whose time left is off by more than ``slack`` seconds is in both lists.
    """
    wanted = {number(key.version, text): text for text in want}
    gone: list[Any] = []
    kept: set[str] = set()
    for item in have:
        found, expires, raw = parse_element(key, item)
        text = wanted.get(found) if found is not None else None
        if text is None or text in kept:
            gone.append(raw)
            continue
        timeout = want[text]
        if (timeout is None) != (expires is None) or (
            timeout is not None and expires is not None and abs(timeout - expires) > slack
        ):
            gone.append(raw)
        else:
            kept.add(text)
    return gone, {t: left for t, left in want.items() if t not in kept}
