"""Subnet bans: widen an IPv6 ban to its /64 (or another prefix), and escalate to a whole
subnet when several of its addresses were banned within a period.

Pure: addresses, active bans and ``now`` come in as arguments; the daemon applies what comes
out. IPv6 attackers rotate through the 2^64 addresses of one allocation, so banning the single
address achieves nothing; escalation does the same for IPv4 neighbours acting together.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SubnetPolicy:
    """``banprefix6``: prefix an IPv6 ban covers (128 = the address only).

    ``escalate_count`` addresses banned within ``escalate_period`` seconds inside one
    ``escalate_prefix4`` (IPv4) or ``escalate_prefix6`` (IPv6) network ban that whole network;
    a count of 0 turns escalation off.
    """

    banprefix6: int = 128
    escalate_count: int = 0
    escalate_period: float = 3600.0
    escalate_prefix4: int = 24
    escalate_prefix6: int = 48

    @property
    def escalates(self) -> bool:
        return self.escalate_count > 0


def ban_target(address: str, policy: SubnetPolicy) -> str:
    """The address or network a ban of ``address`` should cover."""
    if policy.banprefix6 >= 128 or ":" not in address or "/" in address:
        return address
    net = ipaddress.ip_network(f"{address}/{policy.banprefix6}", strict=False)
    return str(net)


def escalation(address: str, active: Iterable[tuple[str, float]], policy: SubnetPolicy,
               now: float) -> str | None:
    """The subnet to ban because ``address`` was just banned, or None.

    ``active`` holds (address or network, banned_at) of the jail's active bans, the new one
    included. Bans already covering the whole subnet, or wider, mean nothing more to do.
    """
    if not policy.escalates:
        return None
    target = ipaddress.ip_network(address, strict=False)
    prefix = policy.escalate_prefix6 if target.version == 6 else policy.escalate_prefix4
    if target.prefixlen <= prefix:
        return None
    subnet = target.supernet(new_prefix=prefix)
    since = now - policy.escalate_period
    members: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for text, banned_at in active:
        net = ipaddress.ip_network(text, strict=False)
        if net.version != subnet.version:
            continue
        if net.prefixlen <= prefix and subnet.subnet_of(net):  # type: ignore[arg-type]
            return None  # already covered
        if banned_at >= since and net.subnet_of(subnet):  # type: ignore[arg-type]
            members.add(net)
    return str(subnet) if len(members) >= policy.escalate_count else None


def covering(address: str, banned: Iterable[str]) -> list[str]:
    """Banned networks that contain ``address`` (for explaining a refused unban)."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return []
    out = []
    for text in banned:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if addr.version == net.version and addr in net:
                out.append(text)
    return out
