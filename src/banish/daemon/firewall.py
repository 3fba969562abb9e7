"""Which firewall backend a jail uses, and what the firewall must know about the jail.

Owns reading a jail's ``action`` / ``banaction`` / ``port`` / ``protocol`` / ``blocktype``
options into a backend name and a ``JailFirewall``.

Which implementation runs an action name (``nftables``, ``iptables``, ``null`` ...):
1. If the config tree has ``action.d/NAME.conf`` (or ``.local``), that script runs — an
   /etc/fail2ban tree behaves exactly as fail2ban would, even for names banish also knows.
2. Else, if NAME is one of banish's native backends (``registry.names()``), the native backend
   runs it (banish's packaged config has no action.d, so ``banaction = nftables`` is native).
3. Else the jail's actions are loaded as action.d scripts, and a missing file is a config error.
A jail whose actions mix both kinds runs them all as scripts. ``action = null`` only logs.
"""

from __future__ import annotations

import logging
import os
import socket

from ..actions import registry
from ..actions.actiondef import ActionDefinition, load_actions, parse_spec
from ..actions.base import JailFirewall
from ..config.filterdef import split_specs
from ..config.loader import Config, JailConfig
from ..errors import ConfigError

log = logging.getLogger("banish.actions")


def _config_dir(jail: JailConfig) -> str:
    """The config directory a jail came from (jail.conf's directory, above jail.d/)."""
    directory = os.path.dirname(jail.file)
    if os.path.basename(directory) == "jail.d":
        directory = os.path.dirname(directory)
    return directory


def _has_action_file(directory: str, name: str) -> bool:
    return any(os.path.isfile(os.path.join(directory, "action.d", name + ext))
               for ext in (".conf", ".local"))


def backend_name(jail: JailConfig) -> str:
    names = [parse_spec(a)[0] for a in split_specs("\n".join(jail.actions))]
    if not names:
        banaction = (jail.options.get("banaction") or "").strip()
        names = [banaction] if banaction else ["null"]
    directory = _config_dir(jail)
    native = set(registry.names()) - {registry.COMMAND}
    if any(n not in native or _has_action_file(directory, n) for n in names):
        return registry.COMMAND
    return names[0]


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


def command_definitions(config: Config) -> dict[str, tuple[ActionDefinition, ...]]:
    """The action.d definitions of every jail that runs scripts; ConfigError names the file."""
    return {j.name: load_actions(config.directory, j.actions, j.options, jail=j.name,
                                 file=j.file)
            for j in config.jails if backend_name(j) == registry.COMMAND}
