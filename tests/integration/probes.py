"""The firewall tests' eyes: each backend's kernel state read and disturbed with the tools
themselves (nft, ipset, iptables-save/iptables), never through the backend under test.

A backend joins the contract tests by adding a probe class to `PROBES`. ``timeouts`` says
whether the kernel keeps the time left of a ban (iptables rules have none: the daemon lifts
those bans itself). ``allowed`` and ``friends`` read a jail's allow list and a friends-only
service's friends as the kernel holds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import shutil
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from ipaddress import ip_address, ip_network
from typing import Any, Protocol

import pytest

from banish.actions import JailFirewall, Network
from banish.addr import canonical_address
from banish.events import PERMANENT, Ban, BanKey
from tests.integration.netns import Namespace, link, namespace

SSHD = JailFirewall("sshd", ports=(22, (2000, 2999)), allow=(ip_network("192.0.2.128/25"),))
WEB = JailFirewall("web", ports=(80, 443), blocktype="drop")


TOOLS = {"nftables": ("nft",), "ipset": ("ipset", "iptables"), "iptables": ("iptables",)}
"""The tools each backend runs."""


def need_tools(kind: str) -> None:
    """Skip the test unless backend ``kind``'s tools are installed."""
    for tool in TOOLS[kind]:
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' is not installed")


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


NOW = 1_700_000_000.0
"""The ``now`` every backend call of the tests passes: bans are absolute, so any will do."""


def ban(addr: str, jail: str = "sshd", left: float | None = 600, *, now: float = NOW) -> Ban:
    """A ban of ``addr`` in ``jail`` with ``left`` seconds to run at ``now`` (None: permanent;
    0 or less: already over). ``bantime`` is whole seconds, as the daemon's are, so a
    fractional ``left`` comes from a ban that began a fraction of a second earlier."""
    assert canonical_address(addr) == addr, f"tests pass canonical text, not {addr!r}"
    if left is None:
        return Ban(addr, jail, now, PERMANENT)
    bantime = max(1, math.ceil(left))
    return Ban(addr, jail, now - (bantime - left), bantime)


def key(addr: str, jail: str = "sshd") -> BanKey:
    return BanKey(addr, jail)


def close_to(left: float | None, want: float, slack: float = 5) -> bool:
    return left is not None and want - slack <= left <= want


def namespace_or_skip() -> Iterator[Namespace]:
    """A fresh namespace for one test; skip where namespaces cannot be made (a container
    without CAP_SYS_ADMIN)."""
    try:
        with namespace() as made:
            yield made
    except RuntimeError as exc:
        if "ip netns add" in str(exc):
            pytest.skip(str(exc))
        raise


@contextmanager
def routed(router: Namespace) -> Iterator[tuple[Namespace, Namespace]]:
    """(client, server) namespaces behind ``router``, which forwards between them: clients
    10.210.0.2 and .3 reach the router at 10.210.0.1, the server is 10.211.0.2. The path of
    a port Docker publishes, with the DNAT left to the caller."""
    with namespace() as client, namespace() as server:
        link(
            router, client, ["10.210.0.1/24"], ["10.210.0.2/24", "10.210.0.3/24"], a_dev="to-client"
        )
        link(router, server, ["10.211.0.1/24"], ["10.211.0.2/24"], a_dev="to-server")
        client.run("ip", "route", "add", "default", "via", "10.210.0.1")
        server.run("ip", "route", "add", "default", "via", "10.211.0.1")
        router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield client, server


class Probe(Protocol):
    timeouts: bool

    def bans(self, jail: str) -> dict[Network, float | None]: ...
    def allowed(self, jail: str) -> set[Network]: ...
    def friends(self, service: str) -> set[Network]: ...
    def flush_by_hand(self, jail: str) -> None: ...
    def add_by_hand(self, jail: str, address: str) -> None: ...
    def drop_structure_by_hand(self) -> None: ...
    def add_foreign(self) -> None: ...
    def foreign_intact(self) -> bool: ...
    def started(self, jails: list[JailFirewall]) -> bool: ...
    def stopped(self) -> bool: ...


class NftProbe:
    """Looks at ``table inet banish`` with nft itself, not through the backend under test."""

    timeouts = True

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns

    def tables(self) -> set[tuple[str, str]]:
        return {
            (o["table"]["family"], o["table"]["name"])
            for o in self.ns.nft_json("list", "tables")
            if "table" in o
        }

    def delete_set_by_hand(self, jail: str, name: str) -> None:
        """Remove one ban set and the rule that uses it (nft refuses to drop a set in use)."""
        chain = f"jail-{jail}"
        for o in self.ns.nft_json("-a", "list", "chain", "inet", "banish", chain):
            if "rule" in o and o["rule"]["expr"][0]["match"]["right"] == f"@{name}":
                self.ns.nft("delete", "rule", "inet", "banish", chain, "handle",
                            str(o["rule"]["handle"]))
        self.ns.nft("delete", "set", "inet", "banish", name)

    def sets(self) -> dict[str, list[Any]]:
        objs = self.ns.nft_json("list", "table", "inet", "banish")
        return {o["set"]["name"]: o["set"].get("elem", []) for o in objs if "set" in o}

    def bans(self, jail: str) -> dict[Network, float | None]:
        """Every banned network of ``jail`` with the kernel's time left (None = permanent)."""
        out: dict[Network, float | None] = {}
        if ("inet", "banish") not in self.tables():
            return out
        for name, elems in self.sets().items():
            if not name.startswith(f"{jail}-v"):
                continue
            for item in elems:
                val, left = item, None
                if isinstance(item, dict) and "elem" in item:
                    val, left = item["elem"]["val"], item["elem"].get("expires")
                if isinstance(val, dict):
                    val = f"{val['prefix']['addr']}/{val['prefix']['len']}"
                out[ip_network(val)] = left
        return out

    def _listed(self, names: tuple[str, str]) -> set[Network]:
        """The members of two interval sets (an IPv4 and an IPv6 list) as networks."""
        sets = self.sets() if ("inet", "banish") in self.tables() else {}
        out: set[Network] = set()
        for name in names:
            for val in sets.get(name, []):
                if isinstance(val, dict):
                    val = f"{val['prefix']['addr']}/{val['prefix']['len']}"
                out.add(ip_network(val))
        return out

    def allowed(self, jail: str) -> set[Network]:
        return self._listed((f"{jail}-allow4", f"{jail}-allow6"))

    def friends(self, service: str) -> set[Network]:
        return self._listed((f"{service}-friends4", f"{service}-friends6"))

    def flush_by_hand(self, jail: str) -> None:
        for name in self.sets():
            if name.startswith(f"{jail}-v"):
                self.ns.nft("flush", "set", "inet", "banish", name)

    def add_by_hand(self, jail: str, address: str) -> None:
        version = ip_address(address).version
        self.ns.nft("add", "element", "inet", "banish", f"{jail}-v{version}", "{", address, "}")

    def drop_structure_by_hand(self) -> None:
        self.ns.nft("delete", "table", "inet", "banish")

    def add_foreign(self) -> None:
        self.ns.nft(
            "-f",
            "-",
            stdin="table inet other {\n set keep { type ipv4_addr; elements = { 10.9.9.9 }; }\n"
            " chain c { type filter hook input priority 0; policy accept; }\n}\n"
            "table ip banish {\n chain c {\n }\n}\n",
        )

    def foreign_intact(self) -> bool:
        other = self.ns.nft("list", "table", "inet", "other")
        return "10.9.9.9" in other and "chain c" in other and ("ip", "banish") in self.tables()

    def started(self, jails: list[JailFirewall]) -> bool:
        if ("inet", "banish") not in self.tables():
            return False
        objs = self.ns.nft_json("list", "table", "inet", "banish")
        chains = {o["chain"]["name"] for o in objs if "chain" in o}
        sets = {o["set"]["name"] for o in objs if "set" in o}
        return "input" in chains and all(
            f"jail-{j.name}" in chains
            and {f"{j.name}-v4", f"{j.name}-v6", f"{j.name}-allow4", f"{j.name}-allow6"} <= sets
            for j in jails
        )

    def stopped(self) -> bool:
        return ("inet", "banish") not in self.tables()


# --- iptables and ipset ------------------------------------------------------------------------


def save(ns: Namespace, version: int) -> tuple[set[str], dict[str, list[str]]]:
    """(chains, rules by chain) of the filter table, read with iptables-save/ip6tables-save."""
    tool = "iptables-save" if version == 4 else "ip6tables-save"
    chains: set[str] = set()
    rules: dict[str, list[str]] = {}
    for line in ns.run(tool, "-t", "filter").splitlines():
        if line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            rules.setdefault(chain, []).append(spec)
    return chains, rules


def iptables(ns: Namespace, version: int, *args: str) -> str:
    return ns.run("iptables" if version == 4 else "ip6tables", "-w", *args)


def ipset_members(ns: Namespace) -> dict[str, dict[str, int | None]]:
    """{set: {member as listed: timeout left (None when the set has no timeouts)}}."""
    out: dict[str, dict[str, int | None]] = {}
    for line in ns.run("ipset", "save").splitlines():
        parts = line.split()
        if parts[:1] == ["create"]:
            out[parts[1]] = {}
        elif parts[:1] == ["add"]:
            left = int(parts[parts.index("timeout") + 1]) if "timeout" in parts else None
            out[parts[1]][parts[2]] = left
    return out


def fitted(prefix: str, jail: str, suffix: str, limit: int) -> str:
    """A kernel name as the backends promise to make it: whole if it fits, else the jail
    shortened, ``~`` and the first 8 hex digits of the jail name's SHA-256."""
    name = prefix + jail + suffix
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(jail.encode()).hexdigest()[:8]
    return f"{prefix}{jail[: limit - len(prefix) - len(suffix) - 9]}~{digest}{suffix}"


class _XtablesProbe:
    """What both iptables-based backends share: chains named after ``hook``."""

    hook = ""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns

    def chain(self, jail: str) -> str:
        return fitted(f"{self.hook}-", jail, "", 28)

    def drop_structure_by_hand(self) -> None:
        for version in (4, 6):
            chains, rules = save(self.ns, version)
            for _ in range(rules.get("INPUT", []).count(f"-j {self.hook}")):
                iptables(self.ns, version, "-D", "INPUT", "-j", self.hook)
            ours = [c for c in chains
                    if c == self.hook or c.startswith((self.hook + "-", self.hook + ".f-"))]
            for chain in ours:
                iptables(self.ns, version, "-F", chain)
            for chain in ours:
                iptables(self.ns, version, "-X", chain)

    def add_foreign(self) -> None:
        for version in (4, 6):
            any_net = "10.9.9.9" if version == 4 else "fd00:99::9"
            iptables(self.ns, version, "-N", "other")
            iptables(self.ns, version, "-A", "other", "-s", any_net, "-j", "ACCEPT")
            iptables(self.ns, version, "-A", "INPUT", "-j", "other")
            iptables(self.ns, version, "-N", "banish-other")  # ours in name only
            iptables(self.ns, version, "-N", "DOCKER-USER")
            iptables(self.ns, version, "-A", "DOCKER-USER", "-j", "RETURN")
        self.ns.run("ipset", "create", "keep", "hash:ip")
        self.ns.run("ipset", "add", "keep", "10.9.9.9")
        self.ns.run("ipset", "create", "banish-other", "hash:ip")

    def foreign_intact(self) -> bool:
        for version in (4, 6):
            chains, rules = save(self.ns, version)
            if not {"other", "banish-other", "DOCKER-USER"} <= chains:
                return False
            if rules.get("INPUT") != ["-j other"] or rules.get("DOCKER-USER") != ["-j RETURN"]:
                return False
            if len(rules.get("other", [])) != 1:
                return False
        sets = ipset_members(self.ns)
        return sets.get("keep") == {"10.9.9.9": None} and "banish-other" in sets

    def _structure(self, version: int, jails: list[JailFirewall]) -> bool:
        chains, rules = save(self.ns, version)
        return (
            f"-j {self.hook}" in rules.get("INPUT", [])
            and self.hook in chains
            and all(self.chain(j.name) in chains for j in jails)
        )

    def _no_structure(self) -> bool:
        for version in (4, 6):
            chains, rules = save(self.ns, version)
            if any(
                c == self.hook or c.startswith((self.hook + "-", self.hook + ".")) for c in chains
            ):
                return False
            if any(self.hook in r for c in ("INPUT", "FORWARD") for r in rules.get(c, [])):
                return False
        return True


_SET = re.compile(r"banish-.+-[hnaf][46]")


class IpsetProbe(_XtablesProbe):
    """Looks at sets ``banish-J-h4|h6|n4|n6`` with ipset and chains ``banish-set*``."""

    timeouts = True
    hook = "banish-set"

    def sets(self, jail: str) -> list[str]:
        return [fitted("banish-", jail, f"-{kind}", 31) for kind in ("h4", "h6", "n4", "n6")]

    def bans(self, jail: str) -> dict[Network, float | None]:
        out: dict[Network, float | None] = {}
        members = ipset_members(self.ns)
        for name in self.sets(jail):
            for text, left in members.get(name, {}).items():
                out[ip_network(text)] = None if not left else float(left)
        return out

    def _listed(self, owner: str, kind: str) -> set[Network]:
        members = ipset_members(self.ns)
        return {ip_network(text) for v in (4, 6)
                for text in members.get(fitted("banish-", owner, f"-{kind}{v}", 31), {})}

    def allowed(self, jail: str) -> set[Network]:
        return self._listed(jail, "a")

    def friends(self, service: str) -> set[Network]:
        return self._listed(service, "f")

    def flush_by_hand(self, jail: str) -> None:
        for name in self.sets(jail):
            self.ns.run("ipset", "flush", name)

    def add_by_hand(self, jail: str, address: str) -> None:
        version = ip_address(address).version
        self.ns.run("ipset", "add", fitted("banish-", jail, f"-h{version}", 31), address)

    def drop_structure_by_hand(self) -> None:
        super().drop_structure_by_hand()
        for name in ipset_members(self.ns):
            if _SET.fullmatch(name):
                self.ns.run("ipset", "destroy", name)

    def started(self, jails: list[JailFirewall]) -> bool:
        sets = ipset_members(self.ns)
        return all(self._structure(v, jails) for v in (4, 6)) and all(
            name in sets for j in jails for name in self.sets(j.name)
        )

    def stopped(self) -> bool:
        return self._no_structure() and not any(_SET.fullmatch(n) for n in ipset_members(self.ns))


class IptablesProbe(_XtablesProbe):
    """Looks at the rules of chains ``banish-ipt-J`` (one per ban) with iptables-save."""

    timeouts = False
    hook = "banish-ipt"

    def _ban_rules(self, jail: str, version: int) -> list[tuple[int, Network]]:
        """(rule number, network) of every ``-s NET -j REJECT|DROP`` rule of the jail."""
        _, rules = save(self.ns, version)
        out: list[tuple[int, Network]] = []
        for number, spec in enumerate(rules.get(self.chain(jail), []), 1):
            tokens = spec.split()
            if tokens[:1] == ["-s"] and tokens[2:4] in (["-j", "REJECT"], ["-j", "DROP"]):
                out.append((number, ip_network(tokens[1])))
        return out

    def bans(self, jail: str) -> dict[Network, float | None]:
        return {net: None for v in (4, 6) for _, net in self._ban_rules(jail, v)}

    def _returns(self, chain: str) -> set[Network]:
        """The sources of the ``-s NET -j RETURN`` rules of ``chain``, both IP versions."""
        out: set[Network] = set()
        for version in (4, 6):
            for spec in save(self.ns, version)[1].get(chain, []):
                tokens = spec.split()
                if tokens[:1] == ["-s"] and tokens[2:] == ["-j", "RETURN"]:
                    out.add(ip_network(tokens[1]))
                elif tokens == ["-j", "RETURN"]:  # iptables-save leaves out "-s 0.0.0.0/0"
                    out.add(ip_network("0.0.0.0/0" if version == 4 else "::/0"))
        return out

    def allowed(self, jail: str) -> set[Network]:
        return self._returns(self.chain(jail))

    def friends(self, service: str) -> set[Network]:
        return self._returns(fitted(f"{self.hook}.f-", service, "", 28))

    def flush_by_hand(self, jail: str) -> None:
        """Deletes the ban rules one by one, as an admin would; the allow rules stay."""
        for version in (4, 6):
            for number, _ in reversed(self._ban_rules(jail, version)):
                iptables(self.ns, version, "-D", self.chain(jail), str(number))

    def add_by_hand(self, jail: str, address: str) -> None:
        version = ip_address(address).version
        iptables(self.ns, version, "-A", self.chain(jail), "-s", address, "-j", "REJECT")

    def started(self, jails: list[JailFirewall]) -> bool:
        return all(self._structure(v, jails) for v in (4, 6))

    def stopped(self) -> bool:
        return self._no_structure()


PROBES: dict[str, type[NftProbe] | type[IpsetProbe] | type[IptablesProbe]] = {
    "nftables": NftProbe,
    "ipset": IpsetProbe,
    "iptables": IptablesProbe,
}
