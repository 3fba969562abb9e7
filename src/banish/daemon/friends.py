"""Friends in the firewall: resolved host names in allow sets, friends-only services, and the
guard that keeps an admin from cutting off the SSH session they are typing in.

Owns turning compiled config plus the resolver's current answers into what the backends take
(`allow_of`: a jail's JailFirewall with its names' addresses; `services`: FriendsOnly values),
which names must be kept resolved (`names_in_use`), and `guard`: before a friends-only service
first takes effect (start, or a reload that adds or changes it), refuse it when the address of
the SSH session running the command would be cut off. Must not resolve names or touch the
firewall.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import replace

from ..addr import canonical_address
from ..config.friends import FriendsConfig
from ..config.loader import JailConfig
from ..config.model import FriendsOnly, JailFirewall
from ..errors import ConfigError
from .resolver import Resolver


def names_in_use(jails: Iterable[JailConfig], friends: Iterable[FriendsConfig]) -> set[str]:
    names = {n for j in jails for n in j.settings.ignoreip.names}
    return names | {n for f in friends for n in f.friends.names}


def allow_of(jail: JailConfig, resolver: Resolver) -> JailFirewall:
    """The jail's firewall with the current addresses of its ignoreip names allowed too."""
    firewall = jail.jail_firewall
    names = jail.settings.ignoreip.names
    if not names:
        return firewall
    return replace(firewall, allow=(*firewall.allow, *resolver.networks(names)))


def services(friends: Iterable[FriendsConfig], resolver: Resolver) -> tuple[FriendsOnly, ...]:
    return tuple(FriendsOnly(f.name, f.ports, f.protocol,
                             (*f.friends.networks, *resolver.networks(f.friends.names)))
                 for f in friends)


def session_of(env: Mapping[str, str]) -> tuple[str, int] | None:
    """(client address, server port) of the SSH session in ``env``, or None.

    ``SSH_CONNECTION`` is "client port server port"; older ``SSH_CLIENT`` "client port
    server-port"."""
    words = env.get("SSH_CONNECTION", "").split()
    if len(words) == 4 and words[3].isdigit():
        client, port = words[0], int(words[3])
    else:
        words = env.get("SSH_CLIENT", "").split()
        if len(words) != 3 or not words[2].isdigit():
            return None
        client, port = words[0], int(words[2])
    address = canonical_address(client)
    return (address, port) if address is not None else None


def guard(new: Iterable[FriendsOnly], old: Iterable[FriendsConfig],
          configs: Iterable[FriendsConfig], session: tuple[str, int] | None) -> None:
    """Raise ConfigError when a friends-only service taking effect now (not in ``old``, or
    changed) would drop the SSH session ``session``; ``configs`` are the new services as
    written, in the order of ``new``."""
    if session is None:
        return
    client, port = session
    address = ipaddress.ip_address(client)
    before = set(old)
    for service, config in zip(new, configs, strict=True):
        if config in before or service.protocol not in ("tcp", "all"):
            continue
        if not any(p == port if isinstance(p, int) else p[0] <= port <= p[1]
                   for p in service.ports):
            continue
        if any(address in net for net in service.friends):
            continue
        raise ConfigError(
            f"friends-only {service.name} would cut off this SSH session from {client} (port "
            f"{port}): {client} is not among its friends' current addresses. Add it to "
            "friends, or give --i-know to apply it anyway",
            file=config.file or None, section=f"friends-only {service.name}", option="friends")
