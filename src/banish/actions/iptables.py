"""Legacy iptables backend: one iptables/ip6tables rule per banned address, for old systems.

Owns the chains ``banish-ipt*`` (layout in `xtables`) and the rules in them: per jail J and IP
version, ``banish-ipt-J`` opens with ``-s ALLOWED -j RETURN`` rules and then holds one
``-s ADDRESS -j REJECT|DROP`` rule per ban; per friends-only service S, ``banish-ipt.f-S``
holds ``-s FRIEND -j RETURN`` rules and then ``-j DROP``. Must not touch other chains (beyond
the one jump from ``INPUT``/``FORWARD``/``DOCKER-USER``) and keeps no ban state: every call
reads the chains with ``iptables-save`` first, so the kernel is the only record.

Lists changing at run time (a friend's name resolved to a new address): each IP version's
chains are rewritten in one ``iptables-restore`` commit, bans kept, so within one version a
friend moving from A to B finds A or B allowed at every moment. Across versions (A IPv4, B
IPv6) the version that only gains goes first; when each version both gains and loses,
`start` commits the union of old and new lists first and the new lists after. A `start`
with the same jails, services and lists as the last one changes nothing.

This is the compatibility backend. Every packet of a jail's ports walks that jail's whole
rule list, and iptables has no timeouts, so the daemon lifts each ban when it ends (it does
for every backend); prefer nftables, or ipset, when many addresses are banned.

Batches: each call is one ``iptables-restore --noflush`` per IP version, which commits all or
nothing; if the second version fails, the first one's change is undone before the error is
raised. A ban of an address that already has a rule adds nothing; an unban removes every rule
of the address (deleting by rule number, highest first, in banish's own chains only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

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
from banish.events import Ban, BanKey

log = logging.getLogger(__name__)

LAYOUT = xtables.Layout("ipt")
_BLOCK = {"reject": "REJECT", "drop": "DROP"}
REBUILD_AFTER = 1000
"""Deleting a rule by number walks the chain (iptables-nft), so lifting 100,000 bans one rule
at a time takes about a minute; past this many deletions the chain is rewritten whole in the
same commit instead (100,000 rules in about 3 s)."""


@dataclass(slots=True)
class _Chain:
    """A jail chain as listed: its ban rules by network, and whether it is as banish left it.

    Not ``intact`` means the allow rules are not the configured ones, a ban rule has another
    verdict than the jail's, or a rule banish cannot have written is there: then the chain is
    rebuilt whole rather than patched.
    """

    intact: bool
    bans: dict[Network, list[int]] = field(default_factory=dict)
    """Banned network -> numbers (1-based) of the rules that ban it."""


def _parse_chain(rules: list[str], jail: JailFirewall, version: int) -> _Chain:
    allow = xtables.allowed(jail, version)
    parsed = [xtables.parse_source_rule(spec, version) for spec in rules]
    intact = parsed[: len(allow)] == [(net, "RETURN") for net in allow]
    chain = _Chain(intact)
    for number, rule in enumerate(parsed, 1):
        if intact and number <= len(allow):
            continue
        if rule is not None and rule[1] in ("REJECT", "DROP"):
            chain.bans.setdefault(rule[0], []).append(number)
            chain.intact &= rule[1] == _BLOCK[jail.blocktype]
        else:
            chain.intact = False
    return chain


def _rule(net: Network, jail: JailFirewall) -> str:
    return f"{xtables.source(net)} {xtables.verdict(jail)}"


def _friend_rules(services: dict[str, FriendsOnly], version: int) -> dict[str, list[str]]:
    """The RETURN rules of each service's friends of one IP version."""
    return {name: [f"{xtables.source(net)} -j RETURN" for net in collapsed(s.friends, version)]
            for name, s in services.items()}


def _by_jail(items: Iterable[BanEntry], version: int) -> dict[str, dict[Network, None]]:
    """Networks of one IP version by jail, in order, without duplicates."""
    out: dict[str, dict[Network, None]] = {}
    for entry in items:
        net = entry.network
        if net.version == version:
            out.setdefault(entry.jail, {})[net] = None
    return out


def _listed(shape: Shape, owners: Shape) -> set[tuple[str, str, Network]]:
    """The (kind, owner, network) of every allow and friends entry of ``shape`` whose jail
    or service is also in ``owners``."""
    out = {("jail", n, net) for n, j in shape.jails.items() if n in owners.jails
           for net in j.allow}
    return out | {("friends", n, net) for n, s in shape.services.items() if n in owners.services
                  for net in s.friends}


def phases(old: Shape | None, new: Shape) -> list[tuple[Shape, tuple[int, int]]]:
    """The shapes to commit, in turn, and the order of IP versions for each, so that no
    moment lacks both an entry leaving a list and one joining a list of another version.

    One commit per version is atomic, so within a version nothing is ever missing; only a
    version losing entries while the other gains them needs care: the gaining one first, or,
    when each version gains and loses, the union of both lists first."""
    if old is None:
        return [(new, (4, 6))]
    before, after = _listed(old, new), _listed(new, old)
    gains = {net.version for _, _, net in after - before}
    losses = {net.version for _, _, net in before - after}
    if {4, 6} <= gains and {4, 6} <= losses:
        union = Shape.of(
            [replace(j, allow=(*old.jails[n].allow, *j.allow)) if n in old.jails else j
             for n, j in new.jails.items()],
            [replace(s, friends=(*old.services[n].friends, *s.friends))
             if n in old.services else s for n, s in new.services.items()])
        return [(union, (4, 6)), (new, (4, 6))]
    return [(new, (6, 4) if 4 in losses and 6 in gains else (4, 6))]


@dataclass(slots=True)
class _Step:
    """One family's change and the change that undoes it."""

    family: xtables.Family
    lines: list[str]
    undo: list[str]


class IptablesBackend:
    """One rule per ban in iptables chains; see the module docstring.

    ``netns`` runs every tool inside that network namespace (``ip netns exec``), which is how
    the tests keep away from the host's firewall. ``forward`` filters forwarded traffic for
    every jail (a jail can also ask for it alone). ``iptables``/``ip6tables`` name the tools
    (``iptables-legacy`` on a system whose kernel lacks nf_tables); ``-save`` and
    ``-restore`` are appended to them. ``timeout`` bounds one tool run. Calls are serialized.
    """

    def __init__(
        self,
        *,
        netns: str | None = None,
        forward: bool = False,
        iptables: str = "iptables",
        ip6tables: str = "ip6tables",
        timeout: float = 60.0,
    ) -> None:
        self._families = xtables.families(netns, iptables, ip6tables, timeout)
        self._forward = forward
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
                log.debug("iptables: jails, friends-only services and lists unchanged")
                return
            families = {family.version: family for family in self._families}
            for step, order in phases(self._shape, shape):
                for version in order:
                    await self._reshape(families[version], step)
            self._jails, self._services, self._shape = shape.jails, shape.services, shape

    async def _reshape(self, family: xtables.Family, shape: Shape) -> None:
        """One family's chains made ``shape`` in one commit: a jail chain that is not as
        ``shape`` says (allow list, blocktype) is rebuilt keeping its bans; an intact one is
        left alone."""
        ruleset = await family.save()
        bodies: dict[str, list[str] | None] = {}
        for jail in shape.jails.values():
            chain = self._chain(ruleset, jail, family.version)
            if chain is not None and chain.intact:
                bodies[jail.name] = None  # bans and all: nothing to change
            else:
                kept = chain.bans if chain else {}
                bodies[jail.name] = xtables.allow_rules(jail, family.version) + [
                    _rule(net, jail) for net in kept
                ]
        await family.restore(xtables.structure(
            LAYOUT, ruleset, shape.jails, bodies, forward_all=self._forward,
            services=shape.services, friend_rules=_friend_rules(shape.services, family.version)))

    async def ban(self, bans: Sequence[Ban], now: float) -> None:
        current = entries(bans, now)
        async with self._lock:
            self._check_jails(current)
            steps: list[_Step] = []
            for family in self._families:
                wanted = _by_jail(current, family.version)
                if not wanted:
                    continue
                ruleset = await family.save()
                lines: list[str] = []
                for name, nets in wanted.items():
                    jail = self._jails[name]
                    chain = self._chain(ruleset, jail, family.version)
                    if chain is None:
                        raise BackendError(
                            f"chain {LAYOUT.jail_chain(name)} is missing (removed by hand?); "
                            "reconcile rebuilds it"
                        )
                    target = LAYOUT.jail_chain(name)
                    lines += [f"-A {target} {_rule(n, jail)}" for n in nets if n not in chain.bans]
                undo = [f"-D {line[3:]}" for line in lines]
                steps.append(_Step(family, lines, undo))
            await self._apply(steps)

    async def unban(self, keys: Sequence[BanKey]) -> None:
        lifted = key_entries(keys)
        async with self._lock:
            self._check_jails(lifted)
            steps: list[_Step] = []
            for family in self._families:
                wanted = _by_jail(lifted, family.version)
                if not wanted:
                    continue
                ruleset = await family.save()
                declare: list[str] = []
                lines: list[str] = []
                undo: list[str] = []
                for name, nets in wanted.items():
                    jail = self._jails[name]
                    chain = self._chain(ruleset, jail, family.version)
                    if chain is None:
                        continue  # no chain, no bans
                    target = LAYOUT.jail_chain(name)
                    numbers = [n for net in nets for n in chain.bans.get(net, [])]
                    if len(numbers) > REBUILD_AFTER:
                        declare.append(f":{target} - [0:0]")
                        kept = [net for net in chain.bans if net not in nets]
                        lines += self._body(jail, family.version, kept, target)
                    else:
                        lines += [f"-D {target} {n}" for n in sorted(numbers, reverse=True)]
                    undo += [f"-A {target} {_rule(net, jail)}" for net in nets if net in chain.bans]
                steps.append(_Step(family, declare + lines, undo))
            await self._apply(steps)

    async def reconcile(self, active: Sequence[Ban], now: float) -> None:
        current = entries(active, now)
        async with self._lock:
            self._check_jails(current)
            for family in self._families:
                desired = _by_jail(current, family.version)
                ruleset = await family.save()
                bodies: dict[str, list[str] | None] = {}
                patches: list[str] = []
                for jail in self._jails.values():
                    want = desired.get(jail.name, {})
                    chain = self._chain(ruleset, jail, family.version)
                    patch = self._patch(jail, chain, want) if chain and chain.intact else None
                    if patch is None:
                        bodies[jail.name] = xtables.allow_rules(jail, family.version) + [
                            _rule(net, jail) for net in want
                        ]
                    else:
                        bodies[jail.name] = None
                        patches += patch
                lines = xtables.structure(
                    LAYOUT, ruleset, self._jails, bodies, forward_all=self._forward,
                    services=self._services,
                    friend_rules=_friend_rules(self._services, family.version))
                await family.restore(lines + patches)

    async def stop(self) -> None:
        async with self._lock:
            for family in self._families:
                await family.restore(xtables.teardown(LAYOUT, await family.save()))
            self._jails, self._services, self._shape = {}, {}, None

    # -- planning --

    def _check_jails(self, items: Iterable[BanEntry]) -> None:
        unknown = {e.jail for e in items} - self._jails.keys()
        if unknown:
            raise ValueError(f"jails not started in the firewall: {', '.join(sorted(unknown))}")

    @staticmethod
    def _chain(ruleset: xtables.Ruleset, jail: JailFirewall, version: int) -> _Chain | None:
        name = LAYOUT.jail_chain(jail.name)
        if name not in ruleset.chains:
            return None
        return _parse_chain(ruleset.rules.get(name, []), jail, version)

    @staticmethod
    def _body(jail: JailFirewall, version: int, nets: Iterable[Network], target: str) -> list[str]:
        """Lines that refill a declared (so emptied) jail chain: allow rules, then ``nets``."""
        rules = xtables.allow_rules(jail, version) + [_rule(net, jail) for net in nets]
        return [f"-A {target} {rule}" for rule in rules]

    @staticmethod
    def _patch(jail: JailFirewall, chain: _Chain, want: dict[Network, None]) -> list[str] | None:
        """Lines that turn an intact chain's bans into ``want``: extra and duplicate rules
        deleted (highest number first, so the numbers still hold), missing ones appended.
        None when so many go that rewriting the chain is faster."""
        target = LAYOUT.jail_chain(jail.name)
        doomed = [n for net, ns in chain.bans.items() for n in (ns if net not in want else ns[1:])]
        if len(doomed) > REBUILD_AFTER:
            return None
        lines = [f"-D {target} {n}" for n in sorted(doomed, reverse=True)]
        return lines + [f"-A {target} {_rule(net, jail)}" for net in want if net not in chain.bans]

    async def _apply(self, steps: list[_Step]) -> None:
        """Each family's step in turn; if one fails, the ones already made are undone."""
        done: list[_Step] = []
        for step in steps:
            try:
                await step.family.restore(step.lines)
            except BackendError:
                for made in reversed(done):
                    try:
                        await made.family.restore(made.undo)
                    except BackendError as exc:  # the next reconcile repairs it
                        log.error("undoing a partly applied iptables batch failed: %s", exc)
                raise
            done.append(step)
