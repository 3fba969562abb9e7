"""``[friends-only NAME]`` sections: services only friends may reach (banish's, not fail2ban's).

    [friends-only ssh]
    port = 22
    protocol = tcp
    friends = home.dyndns.example 203.0.113.0/24 office.example.org

Owns reading such a section into a ``FriendsConfig`` (ports, protocol, the friends as written:
networks and host names) and the rule that friends are never banned: every jail's ``ignoreip``
gains every friend (so the core ignores them and each jail's kernel allow set holds them).
Host names are resolved by the daemon (``daemon/resolver.py``), not here. A broken section is
an error for the whole configuration -- skipping it would open the port to everyone.
Must not resolve names or touch the firewall.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import ConfigError
from .firewall import parse_ports, parse_protocol
from .model import IgnoreIP, Port, Transport
from .values import parse_ignoreip

PREFIX = "friends-only"


@dataclass(frozen=True, slots=True)
class FriendsConfig:
    """One friends-only service as configured; ``friends`` not yet resolved."""

    name: str
    ports: tuple[Port, ...]
    protocol: Transport
    friends: IgnoreIP
    file: str = ""


def section_name(section: str) -> str | None:
    """NAME of a ``[friends-only NAME]`` section, or None for any other section."""
    head, _, rest = section.partition(" ")
    return rest.strip() if head == PREFIX and rest.strip() else None


def friends_config(section: str, options: Mapping[str, str], file: str) -> FriendsConfig:
    name = section_name(section)
    assert name is not None
    try:
        ports = parse_ports(options.get("port", ""))
        if not ports:
            raise ConfigError("give the ports only friends may reach (all ports would cut off "
                              "everything else)", option="port")
        protocol = parse_protocol(options.get("protocol", ""))
        friends = parse_ignoreip(options.get("friends", ""), "friends")
        if not friends:
            raise ConfigError("no friends: nobody could reach these ports", option="friends")
    except ConfigError as exc:
        raise exc.located(file=file, section=section) from exc
    unknown = set(options) - {"port", "protocol", "friends"}
    if unknown:
        raise ConfigError(f"unknown option {sorted(unknown)[0]!r} (port, protocol, friends)",
                          file=file, section=section, option=sorted(unknown)[0])
    return FriendsConfig(name, ports, protocol, friends, file)


def with_friends(ignoreip: IgnoreIP, friends: tuple[FriendsConfig, ...]) -> IgnoreIP:
    """``ignoreip`` plus every friend: a friend is never banned by any jail."""
    if not friends:
        return ignoreip
    networks = dict.fromkeys(ignoreip.networks)
    names = dict.fromkeys(ignoreip.names)
    for f in friends:
        networks.update(dict.fromkeys(f.friends.networks))
        names.update(dict.fromkeys(f.friends.names))
    return replace(ignoreip, networks=tuple(networks), names=tuple(names))
