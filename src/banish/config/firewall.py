"""A jail's enforcement, compiled once: which native firewall, what it blocks, which scripts.

Owns turning a jail's ``action`` / ``banaction`` / ``port`` / ``protocol`` / ``blocktype``
options into a ``JailEnforcement``: the native backend name (or none), the ``JailFirewall``
it needs, and the resolved action.d definitions. Runs once per (re)load; the daemon never reads
these options or looks at the disk for action files afterwards.

Which implementation runs an action name, per action of the jail:
1. If the config tree has ``action.d/NAME.conf`` (or ``.local``), that script runs -- an
   /etc/fail2ban tree behaves exactly as fail2ban would, even for names banish also knows.
2. Else, if NAME is one of banish's native backends (``NATIVE_BACKENDS``), the native backend
   enforces it, with the action's ``port``/``protocol``/``blocktype`` arguments (else the
   jail's options).
3. Else, if NAME is a native notification action (``banish-mail``, ``banish-webhook``...,
   ``config/notify.py``), it becomes a typed NotifyAction (``JailEnforcement.notify``).
4. Else it is an error naming the jail, ``action`` and the missing file.
A jail may have one native backend and any number of scripts; scripts run beside the firewall
as a subscriber of the ban event stream (fail2ban runs all its actions that way too). A jail
with no action at all only logs (``null``).
Must not: create backends, run anything, or read the clock.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from .actiondef import ActionDefinition, load_actions, parse_spec
from .filterdef import split_specs
from .model import Blocktype, JailFirewall, Port, Transport
from .notify import NotifyAction, compile_notify, is_notify_action

log = logging.getLogger("banish.config")

NATIVE_BACKENDS = ("auto", "ipset", "iptables", "nftables", "null")
"""Action names banish enforces itself (``auto``: nftables, else ipset, whichever works)."""

_ALL_PORTS = frozenset({"", "0:65535", "1:65535", "all", "any"})
_PROTOCOLS: dict[str, Transport] = {"tcp": "tcp", "udp": "udp", "sctp": "sctp",
                                    "udplite": "udplite", "all": "all"}


@dataclass(frozen=True, slots=True)
class JailEnforcement:
    """How one jail's bans are enforced. ``backend`` None: only scripts act (or nothing)."""

    backend: str | None
    firewall: JailFirewall
    scripts: tuple[ActionDefinition, ...] = ()
    notify: tuple[NotifyAction, ...] = ()


def has_action_file(directory: str, name: str) -> bool:
    return any(os.path.isfile(os.path.join(directory, "action.d", name + ext))
               for ext in (".conf", ".local"))


def compile_enforcement(directory: str, jail: str, options: Mapping[str, str],
                        file: str) -> JailEnforcement:
    """The jail's enforcement; ConfigError names the file, section and option at fault."""
    specs = list(split_specs(options.get("action", "")))
    if not specs:
        banaction = (options.get("banaction") or "").strip()
        specs = [banaction] if banaction else ["null"]
    native: list[tuple[str, dict[str, str]]] = []
    script_specs: list[str] = []
    notify: list[NotifyAction] = []
    for spec in specs:
        try:
            name, args = parse_spec(spec)
            if is_notify_action(name) and not has_action_file(directory, name):
                notify.append(compile_notify(name, args, jail))
                continue
        except ConfigError as exc:
            raise exc.located(file=file, section=jail, option="action") from exc
        if has_action_file(directory, name) or name not in NATIVE_BACKENDS:
            script_specs.append(spec)
        else:
            native.append((name, args))
    scripts = load_actions(directory, script_specs, options, jail=jail, file=file)
    firewalls = [n for n in native if n[0] != "null"]
    if len(firewalls) > 1:
        raise ConfigError(f"more than one native firewall ({', '.join(n for n, _ in firewalls)}); "
                          "name one", file=file, section=jail, option="action")
    chosen = firewalls[0] if firewalls else (native[0] if native else None)
    args = chosen[1] if chosen else {}

    def value(option: str) -> str:
        given = args.get(option)
        return (given if given is not None else options.get(option) or "").strip()

    enforcing = chosen is not None and chosen[0] != "null"
    try:
        ports = parse_ports(value("port"))  # a typo'd service breaks iptables scripts too
        protocol: Transport = "tcp"
        blocktype: Blocktype = "reject"
        try:
            protocol = parse_protocol(value("protocol"))
            blocktype = parse_blocktype(value("blocktype"))
        except ConfigError:
            if enforcing:
                raise  # scripts read these themselves, in their own dialect
        firewall = JailFirewall(name=jail, ports=ports, protocol=protocol, blocktype=blocktype)
    except ConfigError as exc:
        raise exc.located(file=file, section=jail) from exc
    return JailEnforcement(chosen[0] if chosen else None, firewall, tuple(scripts),
                           tuple(notify))


def parse_ports(text: str) -> tuple[Port, ...]:
    """``ssh,http,8000:8100`` -> port numbers and ranges; () is every port."""
    ports: list[Port] = []
    for item in text.replace(" ", "").split(","):
        if item in _ALL_PORTS:
            continue
        try:
            if ":" in item:
                low, high = item.split(":", 1)
                ports.append((_port(low), _port(high)))
            else:
                ports.append(_port(item))
        except (OSError, ValueError):
            raise ConfigError(f"unknown port or service {item!r}", option="port") from None
    return tuple(ports)


def _port(item: str) -> int:
    return int(item) if item.isdigit() else socket.getservbyname(item)


def parse_protocol(text: str) -> Transport:
    """fail2ban's ``protocol``; an empty value is tcp."""
    value = text.lower() or "tcp"
    protocol = _PROTOCOLS.get(value)
    if protocol is None:
        raise ConfigError(f"unknown protocol {text!r} (one of {', '.join(_PROTOCOLS)})",
                          option="protocol")
    return protocol


def parse_blocktype(text: str) -> Blocktype:
    """fail2ban writes blocktype as an iptables target (``REJECT --reject-with icmp-port-
    unreachable``, ``DROP``); what matters to a native firewall is drop or reject."""
    value = text.lower()
    if not value or "reject" in value:
        return "reject"
    if "drop" in value or value == "blackhole":
        return "drop"
    raise ConfigError(f"unknown blocktype {text!r} (drop or reject)", option="blocktype")
