"""ipset backend: bans are members of kernel ipsets that iptables/ip6tables rules match.

Owns the sets named ``banish-<jail>-h4|h6|n4|n6`` (``hash:ip`` for hosts, ``hash:net`` for
networks, per IP version, all with per-element timeouts), the address lists
``banish-<jail>-a4|a6`` (a jail's allow list) and ``banish-<service>-f4|f6`` (a friends-only
service's friends; ``hash:net``, no timeouts), the ``ipset restore -exist`` batches that fill
them (one process per call, never one per ban) and, through `xtables`, the chains
``banish-set*`` that match them. Must not touch other sets or chains, and keeps no ban state:
the kernel expires timed bans, and every call reads the kernel's sets first.

Per jail J, friends-only service S and IP version (``iptables``/``ip6tables``)::

    banish-set.f-S -m set --match-set banish-S-f4 src -j RETURN
                   -j DROP
    banish-set-J   -m set --match-set banish-J-a4 src -j RETURN
                   -m set --match-set banish-J-h4 src -j REJECT|DROP
                   -m set --match-set banish-J-n4 src -j REJECT|DROP

Lists live in sets, not rules, so that a changed list (a friend's name resolved to a new
address) is one ``ipset restore`` that adds every new member before it deletes any old one,
in both IP versions: at every moment a friend moving from A to B finds A or B allowed, the
rules stay as they are and no ban is touched. A `start` with the same jails, services and
lists as the last one sends nothing; one where only lists changed sends only that restore.

``hash:net`` holds networks of different lengths side by side, each with its own timeout, so
10.0.0.0/16 and 10.0.0.0/24 can both be banned; hosts go to the faster ``hash:ip``. A /0 is
stored as two /1 (``hash:net`` refuses /0). The kernel counts timeouts in whole seconds up to
2,147,483 (about 24.8 days); a longer ban is stored without a timeout and the daemon lifts it
when it ends, as it does every ban.

Batches: ``ipset restore`` applies commands one by one and stops at the first failure, so a
call first reads the set headers (``ipset list -t``) and refuses the whole batch when a set is
missing, of the wrong kind, or would overflow ``maxelem``; only a failure inside the kernel
(out of memory) can leave part of a batch applied, and every command is idempotent
(``-exist``), so the retry or the next `reconcile` completes it. `start`, `reconcile` and
`stop` take up to four steps (sets, iptables, ip6tables, removal of old sets), each atomic;
if one fails, running the call again converges.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import TypeAlias

from banish.actions import xtables
from banish.actions.base import (
    BackendError,
    BanEntry,
    FriendsOnly,
    JailFirewall,
    Network,
    Shape,
    collapsed,
    entries,
    key_entries,
)
from banish.actions.tools import netns_prefix, run_tool
from banish.events import Ban, BanKey

log = logging.getLogger(__name__)

SET_MAX = 31
"""Longest ipset name (IPSET_MAXNAMELEN less the terminating NUL)."""
MAX_TIMEOUT = 2_147_483
"""Longest per-element timeout ipset accepts, in seconds."""
MAXELEM = 1 << 20
"""Default capacity of one set (ipset's own default, 65,536, is too small for a big attack);
the kernel allocates memory as members arrive, not up front."""
LAYOUT = xtables.Layout("set")

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_HOST_LEN = {4: 32, 6: 128}
_NETWORKS = (IPv4Network, IPv6Network)
_OWNED = re.compile(r"banish-[A-Za-z0-9_~][A-Za-z0-9_.~-]*-[hnaf][46]")
_TMP = "banish-~tmp-"

SetKey: TypeAlias = tuple[str, int, bool]
"""(jail, IP version, holds networks)."""
Member: TypeAlias = int | tuple[int, int]
"""A host as an integer, a network as (network address as integer, prefix length)."""


def set_name(jail: str, version: int, networks: bool) -> str:
    """The set of ``jail``'s bans of one IP version: hosts (``h``) or networks (``n``)."""
    return xtables.fit_name("banish-", jail, f"-{'n' if networks else 'h'}{version}", SET_MAX)


def list_name(owner: str, version: int, kind: str) -> str:
    """The address list of a jail (``kind`` "a": its allow list) or of a friends-only service
    ("f": its friends). The suffix keeps a jail's and a service's of one name apart."""
    return xtables.fit_name("banish-", owner, f"-{kind}{version}", SET_MAX)


def _lists(jails: Iterable[JailFirewall], services: Iterable[FriendsOnly]
           ) -> dict[str, tuple[int, set[Member]]]:
    """Every address list by set name: (IP version, members)."""
    out: dict[str, tuple[int, set[Member]]] = {}
    named = [(j.name, "a", j.allow) for j in jails] + [(s.name, "f", s.friends) for s in services]
    for owner, kind, nets in named:
        for version in (4, 6):
            members = {m for net in collapsed(nets, version) for m in _net_members(net)}
            out[list_name(owner, version, kind)] = (version, members)
    return out


def _set_type(networks: bool) -> str:
    return "hash:net" if networks else "hash:ip"


def _family(version: int) -> str:
    return "inet" if version == 4 else "inet6"


def _keys(jail: str) -> list[SetKey]:
    # hosts before networks: ``ipset list -n`` shows sets in creation order
    return [(jail, 4, False), (jail, 6, False), (jail, 4, True), (jail, 6, True)]


def _seconds(expires_in: float | None) -> int:
    """ipset's timeout for a ban; 0 is permanent (and stands for bans longer than ipset takes)."""
    if expires_in is None:
        return 0
    seconds = max(1, math.ceil(expires_in))
    return 0 if seconds > MAX_TIMEOUT else seconds


def _longer(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else max(a, b)


def _group(items: Iterable[BanEntry]) -> dict[SetKey, dict[Member, int]]:
    """Bans by set, each as {member: timeout}; a duplicate keeps its longest ban."""
    out: dict[SetKey, dict[Member, int]] = {}
    for entry in items:  # the hot loop of a big batch: plain tuples and ints
        addr = entry.address
        timeout = _seconds(entry.expires_in)
        members: list[Member]
        if isinstance(addr, _NETWORKS):
            members = _net_members(addr)
            per_set = out.setdefault((entry.jail, addr.version, True), {})
        else:
            members = [int(addr)]
            per_set = out.setdefault((entry.jail, addr.version, False), {})
        for member in members:
            per_set[member] = _longer(per_set[member], timeout) if member in per_set else timeout
    return out


def _net_members(net: Network) -> list[Member]:
    """A network as ``hash:net`` members: a /0 as its two halves (``hash:net`` refuses /0)."""
    if net.prefixlen == 0:
        return [(0, 1), (1 << (_HOST_LEN[net.version] - 1), 1)]
    return [(int(net.network_address), net.prefixlen)]


def _text(version: int, member: Member) -> str:
    if isinstance(member, int):
        return socket.inet_ntop(_AF[version], member.to_bytes(_HOST_LEN[version] // 8, "big"))
    number, plen = member
    raw = number.to_bytes(_HOST_LEN[version] // 8, "big")
    return f"{socket.inet_ntop(_AF[version], raw)}/{plen}"


def _member(version: int, networks: bool, text: str) -> Member | None:
    """The member an ``ipset save`` line names, or None if it cannot be parsed."""
    addr, _, plen = text.partition("/")
    try:
        number = int.from_bytes(socket.inet_pton(_AF[version], addr), "big")
        length = int(plen) if plen else _HOST_LEN[version]
    except (OSError, ValueError):
        return None
    if not networks and not plen:
        return number
    return number, length


def _order(member: Member) -> tuple[int, int]:
    return (member, 0) if isinstance(member, int) else member


def _swapped(name: str, create_tmp: str, members: Iterable[str]) -> list[str]:
    """Lines that build a set's replacement (``create_tmp`` makes it, under a name starting
    with ``_TMP``), fill it with ``members`` (text after the set name) and swap it in: the
    set's users see the old members until the swap, then the new ones."""
    tmp = create_tmp.split()[1]
    return [create_tmp, *(f"add {tmp} {m}" for m in members), f"swap {tmp} {name}",
            f"destroy {tmp}"]


def _returns(listed: str) -> str:
    """The rule that lets the members of an address list go on (out of the chain)."""
    return f"-m set --match-set {listed} src -j RETURN"


@dataclass(slots=True)
class _SetInfo:
    """One set as ``ipset save`` or ``ipset list -t`` describes it."""

    kind: str
    family: str | None
    maxelem: int
    timeout: bool
    entries: int = 0
    members: dict[Member, tuple[str, int]] = field(default_factory=dict)
    """member -> (text as listed, seconds left; 0 = permanent). Filled by ``save`` only."""


def _header(kind: str, tokens: list[str]) -> _SetInfo:
    def after(word: str) -> str | None:
        return tokens[tokens.index(word) + 1] if word in tokens[:-1] else None

    maxelem = after("maxelem")
    return _SetInfo(
        kind=kind,
        family=after("family"),
        maxelem=int(maxelem) if maxelem and maxelem.isdigit() else 65536,
        timeout="timeout" in tokens,
    )


def _parse_save(text: str) -> dict[str, _SetInfo]:
    sets: dict[str, _SetInfo] = {}
    versions: dict[str, tuple[int, bool]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].startswith("banish-"):
            continue
        name = parts[1]
        if parts[0] == "create" and _OWNED.fullmatch(name):
            info = sets[name] = _header(parts[2], parts[3:])
            versions[name] = (6 if info.family == "inet6" else 4, parts[2] == "hash:net")
        elif parts[0] == "add" and name in sets:
            version, networks = versions[name]
            member = _member(version, networks, parts[2])
            left = int(parts[4]) if len(parts) > 4 and parts[3] == "timeout" else 0
            if member is not None:  # a set's family fixes how its members read
                sets[name].members[member] = (parts[2], left)
    for info in sets.values():
        info.entries = len(info.members)
    return sets


def _parse_terse(text: str) -> dict[str, _SetInfo]:
    sets: dict[str, _SetInfo] = {}
    name, fields = "", dict[str, str]()
    for line in [*text.splitlines(), "Name: "]:
        key, _, value = line.partition(": ")
        if key == "Name":
            if _OWNED.fullmatch(name):
                info = _header(fields.get("Type", ""), fields.get("Header", "").split())
                info.entries = int(fields.get("Number of entries", "0") or 0)
                sets[name] = info
            name, fields = value.strip(), {}
        else:
            fields[key] = value.strip()
    return sets


class IpsetBackend:
    """Bans in ipsets matched by iptables rules; see the module docstring for the layout.

    ``netns`` runs every tool inside that network namespace (``ip netns exec``), which is how
    the tests keep away from the host's firewall. ``forward`` filters forwarded traffic for
    every jail (a jail can also ask for it alone). ``maxelem`` is each ban set's capacity;
    ``slack`` is how far (seconds) the kernel's time left may drift from the daemon's before
    `reconcile` rewrites it; ``timeout`` bounds one tool run. Calls are serialized (one lock).
    """

    def __init__(
        self,
        *,
        netns: str | None = None,
        forward: bool = False,
        ipset: str = "ipset",
        iptables: str = "iptables",
        ip6tables: str = "ip6tables",
        maxelem: int = MAXELEM,
        slack: float = 5.0,
        timeout: float = 60.0,
    ) -> None:
        self._ipset = [*netns_prefix(netns), ipset]
        self._families = xtables.families(netns, iptables, ip6tables, timeout)
        self._forward = forward
        self._maxelem = maxelem
        self._slack = slack
        self._timeout = timeout
        self._jails: dict[str, JailFirewall] = {}
        self._services: dict[str, FriendsOnly] = {}
        self._shape: Shape | None = None
        """What the last successful `start` built; None before it and after `stop`."""
        self._lock = asyncio.Lock()

    # -- the Backend protocol --

    async def start(self, jails: Sequence[JailFirewall],
                    friends: Sequence[FriendsOnly] = ()) -> None:
        shape = Shape.of(jails, friends)
        async with self._lock:
            if shape == self._shape:
                log.debug("ipset: jails, friends-only services and lists unchanged")
                return
            rules = self._shape is None or self._shape.without_lists() != shape.without_lists()
            await self._converge(shape.jails, shape.services, None, rules=rules)
            self._jails, self._services, self._shape = shape.jails, shape.services, shape

    async def ban(self, bans: Sequence[Ban], now: float) -> None:
        def lines(name: str, key: SetKey, members: dict[Member, int], info: _SetInfo | None
                  ) -> list[str]:
            self._usable(name, key, info, adding=len(members))
            return [f"add {name} {_text(key[1], m)} timeout {t}" for m, t in members.items()]

        await self._per_set(entries(bans, now), lines)

    async def unban(self, keys: Sequence[BanKey]) -> None:
        def lines(name: str, key: SetKey, members: dict[Member, int], info: _SetInfo | None
                  ) -> list[str]:
            if info is None:  # no set, nothing of that kind is banned
                return []
            return [f"del {name} {_text(key[1], m)}" for m in members]

        await self._per_set(key_entries(keys), lines)

    async def _per_set(self, bans: Sequence[BanEntry], lines: Callable[
            [str, SetKey, dict[Member, int], _SetInfo | None], list[str]]) -> None:
        """One ``ipset restore`` with ``lines`` of each set the bans fall in."""
        async with self._lock:
            self._check_jails(bans)
            grouped = _group(bans)
            if not grouped:
                return
            sets = await self._read(members=False)
            out: list[str] = []
            for key, members in sorted(grouped.items()):
                name = set_name(*key)
                out += lines(name, key, members, sets.get(name))
            await self._restore(out)

    async def reconcile(self, active: Sequence[Ban], now: float) -> None:
        current = entries(active, now)
        async with self._lock:
            self._check_jails(current)
            await self._converge(self._jails, self._services, _group(current))

    async def stop(self) -> None:
        async with self._lock:
            for family in self._families:
                await family.restore(xtables.teardown(LAYOUT, await family.save()))
            sets = await self._read(members=False)
            await self._restore([f"destroy {name}" for name in sorted(sets)])
            self._jails, self._services, self._shape = {}, {}, None

    # -- planning --

    def _check_jails(self, items: Iterable[BanEntry]) -> None:
        unknown = {e.jail for e in items} - self._jails.keys()
        if unknown:
            raise ValueError(f"jails not started in the firewall: {', '.join(sorted(unknown))}")

    def _usable(self, name: str, key: SetKey, info: _SetInfo | None, *, adding: int) -> None:
        """Refuse a batch that ``ipset restore`` would apply only in part.

        Capacity is judged from the member count alone, so re-bans count as new members: a
        set within ``adding`` of full refuses a batch that would, in fact, have fitted.
        """
        if info is None:
            raise BackendError(f"ipset {name} is missing (removed by hand?); reconcile rebuilds it")
        if not self._conforms(info, key):
            raise BackendError(f"ipset {name} is not a set banish made; reconcile replaces it")
        if info.entries + adding > info.maxelem:
            raise BackendError(
                f"ipset {name} holds {info.entries} of at most {info.maxelem} members and "
                f"cannot take {adding} more"
            )

    def _conforms(self, info: _SetInfo, key: SetKey) -> bool:
        return (
            info.kind == _set_type(key[2])
            and info.family == _family(key[1])
            and info.timeout
            and info.maxelem == self._maxelem
        )

    def _create(self, name: str, key: SetKey) -> str:
        return (
            f"create {name} {_set_type(key[2])} family {_family(key[1])} "
            f"timeout 0 maxelem {self._maxelem}"
        )

    def _set_lines(
        self,
        jails: dict[str, JailFirewall],
        sets: dict[str, _SetInfo],
        desired: dict[SetKey, dict[Member, int]] | None,
    ) -> list[str]:
        """ipset commands that give every jail its four sets: missing ones created, foreign
        shapes swapped for banish's, and (``desired`` given) members made equal to it."""
        lines = [f"destroy {n}" for n in sorted(sets) if n.startswith(_TMP)]  # a crash's leftover
        for jail in jails:
            for key in _keys(jail):
                name, version = set_name(*key), key[1]
                info = sets.get(name)
                want = None if desired is None else desired.get(key, {})
                if info is None:
                    lines.append(self._create(name, key))
                    lines += [
                        f"add {name} {_text(version, m)} timeout {t}"
                        for m, t in (want or {}).items()
                    ]
                elif not self._conforms(info, key):
                    if info.kind != _set_type(key[2]) or info.family != _family(key[1]):
                        raise BackendError(
                            f"ipset {name} exists as {info.kind} family {info.family}, not "
                            f"{_set_type(key[2])} family {_family(key[1])}; remove it"
                        )
                    # same kind, other options: build the right set beside it and swap
                    keep = want
                    if keep is None:
                        keep = {m: left for m, (_, left) in info.members.items()}
                    lines += _swapped(name, self._create(_TMP + name[-2:], key), [
                        f"{_text(version, m)} timeout {t}" for m, t in keep.items()])
                elif want is not None:
                    lines += self._diff(name, version, info, want)
        return lines

    @staticmethod
    def _list_lines(lists: dict[str, tuple[int, set[Member]]], sets: dict[str, _SetInfo]
                    ) -> tuple[list[str], list[str]]:
        """(additions, removals) that make the address lists hold exactly ``lists``; sent
        additions first, so no moment lacks both an old member and its successor."""
        adds: list[str] = []
        dels: list[str] = []
        for name, (version, want) in lists.items():
            info = sets.get(name)
            family = _family(version)
            texts = [_text(version, m) for m in sorted(want, key=_order)]
            if info is None:
                adds.append(f"create {name} hash:net family {family}")
                adds += [f"add {name} {text}" for text in texts]
            elif info.kind != "hash:net" or info.family != family:
                raise BackendError(f"ipset {name} exists as {info.kind} family {info.family}, "
                                   f"not hash:net family {family}; remove it")
            elif info.timeout:  # its members could time out: replace it, members and all
                adds += _swapped(name, f"create {_TMP}{name[-2:]} hash:net family {family}",
                                 texts)
            else:
                adds += [f"add {name} {_text(version, m)}" for m in want
                         if m not in info.members]
                dels += [f"del {name} {text}" for m, (text, _) in info.members.items()
                         if m not in want]
        return adds, dels

    def _diff(self, name: str, version: int, info: _SetInfo, want: dict[Member, int]) -> list[str]:
        """Commands that turn the listed members into ``want``; drifted times are re-added
        (``add -exist`` sets a fresh timeout)."""
        lines = [f"del {name} {text}" for m, (text, _) in info.members.items() if m not in want]
        for member, timeout in want.items():
            have = info.members.get(member)
            if have is not None:
                left = have[1]
                same_kind = (left == 0) == (timeout == 0)
                if same_kind and (timeout == 0 or abs(left - timeout) <= self._slack):
                    continue
            lines.append(f"add {name} {_text(version, member)} timeout {timeout}")
        return lines

    def _body(self, jail: JailFirewall, version: int) -> list[str]:
        matches = [
            f"-m set --match-set {set_name(jail.name, version, networks)} src "
            f"{xtables.verdict(jail)}"
            for networks in (False, True)
        ]
        return [_returns(list_name(jail.name, version, "a")), *matches]

    async def _converge(
        self,
        jails: dict[str, JailFirewall],
        services: dict[str, FriendsOnly],
        desired: dict[SetKey, dict[Member, int]] | None,
        *,
        rules: bool = True,
    ) -> None:
        """Sets first (rules cannot name a missing set), then (``rules``) both families'
        chains, then the sets nothing refers to any more (a set in use cannot be destroyed).
        Address lists change inside the first step, additions before removals."""
        sets = await self._read(members=True)
        lists = _lists(jails.values(), services.values())
        adds, dels = self._list_lines(lists, sets)
        await self._restore(self._set_lines(jails, sets, desired) + adds + dels)
        for family in self._families if rules else ():
            ruleset = await family.save()
            version = family.version
            bodies = {name: self._body(j, version) for name, j in jails.items()}
            friends = {name: [_returns(list_name(name, version, "f"))] for name in services}
            await family.restore(xtables.structure(
                LAYOUT, ruleset, jails, bodies, forward_all=self._forward,
                services=services, friend_rules=friends))
        wanted = {set_name(*key) for jail in jails for key in _keys(jail)} | set(lists)
        old = sorted(n for n in sets if n not in wanted and not n.startswith(_TMP))
        await self._restore([f"destroy {n}" for n in old])

    # -- the one I/O seam --

    async def _read(self, *, members: bool) -> dict[str, _SetInfo]:
        """banish's sets (``ipset save`` with members, else the cheap ``list -t`` headers)."""
        if members:
            return _parse_save((await self._run(["save"])).decode())
        return _parse_terse((await self._run(["list", "-t"])).decode())

    async def _restore(self, lines: list[str]) -> None:
        if not lines:
            return
        log.debug("ipset restore: %d commands", len(lines))
        await self._run(["restore", "-exist"], ("\n".join(lines) + "\n").encode())

    async def _run(self, args: list[str], stdin: bytes | None = None) -> bytes:
        return await run_tool([*self._ipset, *args], stdin, self._timeout)
