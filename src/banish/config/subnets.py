"""Read a jail's subnet-ban options into a ``SubnetPolicy`` (banish options, not fail2ban's).

    banprefix6 = 64            # ban IPv6 offenders' /64 instead of the single address
    escalate = 3 in 1h         # N bans inside one subnet within a period ban the subnet
    escalate.prefix4 = 24      # subnet size for IPv4 (default 24)
    escalate.prefix6 = 48      # subnet size for IPv6 (default 48)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..core.subnets import SubnetPolicy
from ..errors import ConfigError
from .values import parse_int, parse_positive_duration

_ESCALATE = re.compile(r"^\s*(\d+)\s+in\s+(.+?)\s*$")


def subnet_policy(options: Mapping[str, str]) -> SubnetPolicy:
    def value(key: str) -> str | None:
        v = options.get(key)
        return v.strip() if v and v.strip() else None

    prefix6 = 128
    if (v := value("banprefix6")) is not None:
        prefix6 = parse_int(v, "banprefix6", minimum=1)
        if prefix6 > 128:
            raise ConfigError(f"must be 1..128, got {prefix6}", option="banprefix6")
    count, period = 0, 3600.0
    if (v := value("escalate")) is not None and v.lower() not in ("no", "off", "false", "0"):
        m = _ESCALATE.match(v)
        if not m:
            raise ConfigError(f"expected 'N in PERIOD' (e.g. 3 in 1h), got {v!r}",
                              option="escalate")
        count = int(m.group(1))
        period = parse_positive_duration(m.group(2), "escalate")
        if count < 2:
            raise ConfigError("needs at least 2 bans to escalate", option="escalate")
    prefix4 = parse_int(value("escalate.prefix4") or "24", "escalate.prefix4", minimum=1)
    escalate6 = parse_int(value("escalate.prefix6") or "48", "escalate.prefix6", minimum=1)
    if prefix4 > 31 or escalate6 > 127:
        raise ConfigError("escalation prefixes must be wider than one address",
                          option="escalate.prefix4" if prefix4 > 31 else "escalate.prefix6")
    return SubnetPolicy(prefix6, count, period, prefix4, escalate6)
