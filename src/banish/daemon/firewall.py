"""Which firewall backend a jail uses, and what the firewall must know about the jail.

Owns reading a jail's ``action`` / ``banaction`` / ``port`` / ``protocol`` / ``blocktype``
options into a backend name and a ``JailFirewall``. A jail with ``action = null`` only logs.
fail2ban action.d scripts (``iptables-multiport[...]``) are not run yet: such a jail falls back
to logging only, with a warning at start, so that a fail2ban tree still loads.
"""

from __future__ import annotations

import logging
import socket

from ..actions import registry
from ..actions.base import JailFirewall
from ..config.filterdef import split_name_args
from ..config.loader import JailConfig
from ..errors import ConfigError

log = logging.getLogger("banish.actions")

_warned: set[str] = set()


def backend_name(jail: JailConfig) -> str:
    names = [split_name_args(a)[0] for a in jail.actions] if jail.actions else []
    if not names:
        banaction = (jail.options.get("banaction") or "").strip()
        names = [banaction] if banaction else ["null"]
    native = [n for n in names if n in registry.names()]
    if native:
        return native[0]
    if jail.name not in _warned:
        _warned.add(jail.name)
        log.warning("[%s] action %s is a fail2ban action.d script, which this banish cannot "
                    "run yet: bans are recorded and logged but NOT enforced", jail.name,
                    ", ".join(names))
    return "null"


def _ports(text: str, jail: str) -> tuple[int | tuple[int, int], ...]:
    ports: list[int | tuple[int, int]] = []
    for item in text.replace(" ", "").split(","):
        if not item or item in ("0:65535", "1:65535", "all", "any"):
            continue
        try:
            if ":" in item:
                low, high = item.split(":", 1)
                ports.append((_port(low), _port(high)))
            else:
                ports.append(_port(item))
        except (OSError, ValueError):
            raise ConfigError(f"unknown port or service {item!r}", section=jail,
                              option="port") from None
    return tuple(ports)


def _port(item: str) -> int:
    return int(item) if item.isdigit() else socket.getservbyname(item)


def firewall_for(jail: JailConfig) -> JailFirewall:
    opts = jail.options
    protocol = (opts.get("protocol") or "tcp").strip().lower()
    if protocol not in ("tcp", "udp", "all"):
        protocol = "tcp"
    blocktype = (opts.get("blocktype") or "reject").strip().lower()
    if blocktype not in ("drop", "reject"):
        blocktype = "drop" if "drop" in blocktype.lower() else "reject"
    allow = tuple(jail.settings.ignoreip.networks)
    return JailFirewall(
        name=jail.name,
        ports=_ports(opts.get("port", ""), jail.name),
        protocol=protocol,  # type: ignore[arg-type]
        blocktype=blocktype,  # type: ignore[arg-type]
        allow=allow,
    )
