"""iptables/ip6tables plumbing shared by the ipset and the legacy iptables backends.

Owns the chain layout both backends hang into the ``filter`` table, the tools' calls (one
``iptables-save`` to read, one ``iptables-restore --noflush`` per change and family, run by
``tools.run_tool``), parsing the save format, and the names that must fit the kernel's
limits. Must not know what a backend matches bans with (sets or one rule per address), and
must not touch a chain it does not own except for the single jump rule it puts into
``INPUT`` and ``FORWARD``/``DOCKER-USER``.

Layout of one backend with tag T (``set`` for ipset, ``ipt`` for iptables), per IP version::

    INPUT                  -j banish-T                      (inserted first, once)
    FORWARD | DOCKER-USER  -j banish-T.fwd                  (only if a jail filters forwarding)
    banish-T               [-p P -m multiport --dports ...] -j banish-T.f-S    (one per
                                                friends-only service S, before any jail)
                           [-p P -m multiport --dports ...] -j banish-T-J      (one per jail J)
    banish-T.fwd           [-p P -m conntrack --ctorigdstport ...] -j banish-T-J
    banish-T.f-S           the backend's RETURN rules for S's friends; then -j DROP
    banish-T-J             the backend's RETURN rules for allowed sources; then its ban rules

A friend returns from ``banish-T.f-S`` and goes on to the jails (whose allow rules hold every
friend); anyone else is dropped there. Friends-only services guard the host's own ports only
(``INPUT``): on the forward path a destination-port rule would also cut off containers'
connections out to that port. A jail chain's name can never equal a hook or service chain's
('-' versus '.' after the tag), and the two backends' tags keep them apart when both run in
one daemon. ``iptables-restore --noflush`` empties a user chain that is declared
(``:name``), which is how a chain is rebuilt atomically.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network

from banish.actions.base import FriendsOnly, JailFirewall, Network, Port, collapsed
from banish.actions.tools import netns_prefix, run_tool

log = logging.getLogger(__name__)

CHAIN_MAX = 28
"""Longest iptables chain name (XT_EXTENSION_MAXNAMELEN less the terminating NUL)."""

FOREIGN_HOOKS = ("INPUT", "FORWARD", "DOCKER-USER")
_L4_WITH_PORTS = ("tcp", "udp", "sctp", "udplite")
_MULTIPORT_SLOTS = 15
"""multiport takes 15 ports per rule, a range counting as two."""


def fit_name(prefix: str, jail: str, suffix: str, limit: int) -> str:
    """``prefix + jail + suffix``, or, when that is longer than ``limit``, the jail shortened
    and followed by ``~`` and a hash of the whole jail name.

    Jail names may be 64 characters; chain and set names may not. ``~`` cannot appear in a
    jail name, so a shortened name never equals a plain one, and the hash keeps two long
    names with the same beginning apart. The same jail always gets the same name, so bans
    survive restarts.
    """
    name = f"{prefix}{jail}{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(jail.encode()).hexdigest()[:8]
    keep = limit - len(prefix) - len(suffix) - len(digest) - 1
    return f"{prefix}{jail[:keep]}~{digest}{suffix}"


@dataclass(frozen=True, slots=True)
class Layout:
    """The chain names of one backend; ``tag`` keeps two backends' chains apart."""

    tag: str

    @property
    def input(self) -> str:
        return f"banish-{self.tag}"

    @property
    def forward(self) -> str:
        return f"banish-{self.tag}.fwd"

    def jail_chain(self, jail: str) -> str:
        return fit_name(f"banish-{self.tag}-", jail, "", CHAIN_MAX)

    def service_chain(self, service: str) -> str:
        """The chain of a friends-only service (services and jails may share names)."""
        return fit_name(f"banish-{self.tag}.f-", service, "", CHAIN_MAX)

    def owns(self, chain: str) -> bool:
        return chain in (self.input, self.forward) or chain.startswith(
            (self.input + "-", self.input + ".f-"))


@dataclass(slots=True)
class Ruleset:
    """The ``filter`` table as ``iptables-save`` prints it: chains, and each chain's rules
    as the text after ``-A CHAIN``."""

    chains: set[str] = field(default_factory=set)
    rules: dict[str, list[str]] = field(default_factory=dict)


def parse_save(text: str) -> Ruleset:
    ruleset = Ruleset()
    in_filter = False
    for line in text.splitlines():
        if line.startswith("*"):
            in_filter = line == "*filter"
        elif not in_filter:
            continue
        elif line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            ruleset.chains.add(name)
            ruleset.rules.setdefault(name, [])
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            ruleset.rules.setdefault(chain, []).append(spec)
    return ruleset


# --- running the tools ---------------------------------------------------------------------------


class Family:
    """iptables (``version`` 4) or ip6tables (6), optionally inside a network namespace."""

    def __init__(self, version: int, binary: str, netns: str | None, timeout: float) -> None:
        self.version = version
        self._prefix = netns_prefix(netns)
        self._binary = binary
        self._timeout = timeout

    async def save(self) -> Ruleset:
        argv = [*self._prefix, f"{self._binary}-save", "-t", "filter"]
        return parse_save((await run_tool(argv, None, self._timeout)).decode())

    async def restore(self, lines: Sequence[str]) -> None:
        """Apply ``lines`` to the filter table in one commit (all or nothing for this family)."""
        if not lines:
            return
        payload = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
        log.debug("%s-restore: %d lines", self._binary, len(lines))
        argv = [*self._prefix, f"{self._binary}-restore", "--noflush", "--wait=10"]
        await run_tool(argv, payload.encode(), self._timeout)


# --- rule text -----------------------------------------------------------------------------------


def verdict(jail: JailFirewall) -> str:
    return "-j REJECT" if jail.blocktype == "reject" else "-j DROP"


def allowed(jail: JailFirewall, version: int) -> list[Network]:
    """The jail's allow list for one IP version, overlaps merged (fewer rules to walk)."""
    return collapsed(jail.allow, version)


def source(net: Network) -> str:
    return f"-s {net}"


def allow_rules(jail: JailFirewall, version: int) -> list[str]:
    """The RETURN rules that open a jail chain: allowed addresses skip every ban of the jail."""
    return [f"{source(n)} -j RETURN" for n in allowed(jail, version)]


def parse_source_rule(spec: str, version: int) -> tuple[Network, str] | None:
    """(source network, target) of a rule that only matches a source address, else None.

    Reads what iptables-save prints for rules this module writes: ``-s NET -j TARGET`` (no
    ``-s`` at all for /0), and the default ``--reject-with`` that iptables adds to REJECT.
    """
    tokens = spec.split()
    net_text = "0.0.0.0/0" if version == 4 else "::/0"
    if tokens[:1] == ["-s"] and len(tokens) > 1:
        net_text, tokens = tokens[1], tokens[2:]
    if tokens[:1] != ["-j"] or len(tokens) < 2:
        return None
    target, rest = tokens[1], tokens[2:]
    default_reject = [
        "--reject-with",
        "icmp-port-unreachable" if version == 4 else "icmp6-port-unreachable",
    ]
    if rest and not (target == "REJECT" and rest == default_reject):
        return None
    try:
        net = ip_network(net_text)
    except ValueError:
        return None
    return (net, target) if net.version == version else None


def _port(port: Port) -> str:
    return f"{port[0]}:{port[1]}" if isinstance(port, tuple) else str(port)


def _multiport_chunks(ports: Iterable[Port]) -> list[str]:
    chunks: list[list[str]] = [[]]
    used = 0
    for port in sorted(set(ports), key=lambda p: p[0] if isinstance(p, tuple) else p):
        cost = 2 if isinstance(port, tuple) else 1
        if used + cost > _MULTIPORT_SLOTS:
            chunks.append([])
            used = 0
        chunks[-1].append(_port(port))
        used += cost
    return [",".join(c) for c in chunks]


def jump_rules(jail: JailFirewall | FriendsOnly, target: str, *, forwarded: bool) -> list[str]:
    """Rules of a hook chain that send one jail's (or service's) traffic to its chain.

    On the forward path the port is the one the client asked for before DNAT (conntrack's
    original tuple): the port Docker publishes, and the one a jail is configured with.
    """
    protocols = _L4_WITH_PORTS if jail.protocol == "all" else (jail.protocol,)
    if not jail.ports:
        return [f"-j {target}" if jail.protocol == "all" else f"-p {jail.protocol} -j {target}"]
    out: list[str] = []
    for proto in protocols:
        if forwarded:
            out += [
                f"-p {proto} -m conntrack --ctorigdstport {_port(p)} -j {target}"
                for p in jail.ports
            ]
        else:
            out += [
                f"-p {proto} -m multiport --dports {chunk} -j {target}"
                for chunk in _multiport_chunks(jail.ports)
            ]
    return out


# --- plans: restore lines that reshape one family ----------------------------------------------


def structure(
    layout: Layout,
    ruleset: Ruleset,
    jails: Mapping[str, JailFirewall],
    bodies: Mapping[str, Sequence[str] | None],
    *,
    forward_all: bool,
    services: Mapping[str, FriendsOnly] | None = None,
    friend_rules: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Restore lines that make one family's chains exactly ``jails`` and ``services``.

    ``bodies[J]`` is the full rule list of jail J's chain, which is then rebuilt, or None to
    leave an existing, intact chain (and its bans) alone. ``friend_rules[S]`` are the rules
    that return for service S's friends; its chain, always rebuilt (a few rules), holds them
    and then drops everything else. Hook chains are always rebuilt, service
    jumps first; chains no longer listed are removed; the jumps from the system's chains are
    added when missing and deduplicated, and the forward jump follows Docker's DOCKER-USER
    chain when it exists. Everything is one commit, so a packet meets the chains either as
    they were or as they are now.
    """
    services = services or {}
    friend_rules = friend_rules or {}
    forwarded = [j for j in jails.values() if j.forward or forward_all]
    wanted = {layout.input, *(layout.jail_chain(name) for name in jails)}
    wanted |= {layout.service_chain(name) for name in services}
    if forwarded:
        wanted.add(layout.forward)
    rebuilt = [name for name in jails if bodies.get(name) is not None]
    for name in jails:
        if bodies.get(name) is None and layout.jail_chain(name) not in ruleset.chains:
            raise ValueError(f"chain of jail {name} is missing and no rules were given")

    declare = [layout.input, *([layout.forward] if forwarded else [])]
    declare += [layout.service_chain(name) for name in services]
    declare += [layout.jail_chain(name) for name in rebuilt]
    lines = [f":{chain} - [0:0]" for chain in declare]

    hook_of_forward = "DOCKER-USER" if "DOCKER-USER" in ruleset.chains else "FORWARD"
    want_jumps = {("INPUT", layout.input): 1}
    if forwarded:
        want_jumps[(hook_of_forward, layout.forward)] = 1
    inserts: list[str] = []
    for system in FOREIGN_HOOKS:
        for ours in (layout.input, layout.forward):
            have = ruleset.rules.get(system, []).count(f"-j {ours}")
            want = want_jumps.get((system, ours), 0)
            lines += [f"-D {system} -j {ours}"] * max(0, have - want)
            inserts += [f"-I {system} 1 -j {ours}"] * max(0, want - have)

    obsolete = sorted(c for c in ruleset.chains if layout.owns(c) and c not in wanted)
    lines += [f"-F {c}" for c in obsolete] + [f"-X {c}" for c in obsolete]

    for service in services.values():
        chain = layout.service_chain(service.name)
        lines += [f"-A {layout.input} {r}" for r in jump_rules(service, chain, forwarded=False)]
        rules = [*friend_rules.get(service.name, ()), "-j DROP"]
        lines += [f"-A {chain} {rule}" for rule in rules]
    for jail in jails.values():
        chain = layout.jail_chain(jail.name)
        lines += [f"-A {layout.input} {r}" for r in jump_rules(jail, chain, forwarded=False)]
    for jail in forwarded:
        chain = layout.jail_chain(jail.name)
        lines += [f"-A {layout.forward} {r}" for r in jump_rules(jail, chain, forwarded=True)]
    for name in rebuilt:
        chain = layout.jail_chain(name)
        lines += [f"-A {chain} {rule}" for rule in bodies[name] or ()]
    return lines + inserts


def teardown(layout: Layout, ruleset: Ruleset) -> list[str]:
    """Restore lines that remove every chain of ``layout`` and the jumps into them."""
    lines: list[str] = []
    for system in FOREIGN_HOOKS:
        for ours in (layout.input, layout.forward):
            lines += [f"-D {system} -j {ours}"] * ruleset.rules.get(system, []).count(f"-j {ours}")
    owned = sorted(c for c in ruleset.chains if layout.owns(c))
    return lines + [f"-F {c}" for c in owned] + [f"-X {c}" for c in owned]


def families(
    netns: str | None, iptables: str, ip6tables: str, timeout: float
) -> tuple[Family, Family]:
    return Family(4, iptables, netns, timeout), Family(6, ip6tables, netns, timeout)
