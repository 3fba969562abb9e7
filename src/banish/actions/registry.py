"""Firewall backends by name, with ``auto`` picking the first that works on this machine.

Owns the name -> factory table and the probes behind ``auto``. Must not hold ban state or
build firewall commands beyond the harmless probes (listing tables, sets, one chain).
fail2ban action.d scripts are no backend: a jail reaches them through its configured actions
(``JailConfig.actions``), run by ``command.CommandActions`` as a ban-event subscriber.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from banish.actions.base import Backend
from banish.actions.ipset import IpsetBackend
from banish.actions.iptables import IptablesBackend
from banish.actions.nftables import NftablesBackend
from banish.actions.null import NullBackend
from banish.actions.tools import netns_prefix
from banish.errors import ConfigError

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Settings every backend understands (a backend ignores what does not apply to it).

    ``netns`` runs the firewall tools inside a network namespace (tests; containers);
    ``forward`` also filters forwarded traffic (Docker) for every jail.
    """

    netns: str | None = None
    forward: bool = False


Factory = Callable[[BackendOptions], Backend]

_FACTORIES: dict[str, Factory] = {
    "nftables": lambda o: NftablesBackend(netns=o.netns, forward=o.forward),
    "ipset": lambda o: IpsetBackend(netns=o.netns, forward=o.forward),
    "iptables": lambda o: IptablesBackend(netns=o.netns, forward=o.forward),
    "null": lambda o: NullBackend(),
}

# Tried in order by ``auto``; "null" is never chosen silently: a daemon that believes it bans
# while nothing is blocked is worse than one that refuses to start.
# The rule-per-address iptables backend is only used when named.
_AUTO_ORDER = ("nftables", "ipset")


def names() -> tuple[str, ...]:
    """Every name `create` accepts."""
    return (AUTO, *sorted(_FACTORIES))


def _probe(options: BackendOptions, *argv: str) -> str | None:
    """None if the read-only command ``argv`` succeeds here, else the reason it fails."""
    full = [*netns_prefix(options.netns), *argv]
    try:
        done = subprocess.run(full, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {full[0]}: {exc}"
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        return f"{argv[0]}: {err[0]}" if err else f"{argv[0]}: exit status {done.returncode}"
    return None


def probe_nftables(options: BackendOptions) -> str | None:
    """None if ``nft`` can read the ruleset here, else the reason it cannot."""
    return _probe(options, "nft", "list", "tables")


def probe_iptables(options: BackendOptions) -> str | None:
    """None if iptables and ip6tables can read their INPUT chains here."""
    return _probe(options, "iptables", "-w", "-S", "INPUT") or _probe(
        options, "ip6tables", "-w", "-S", "INPUT"
    )


def probe_ipset(options: BackendOptions) -> str | None:
    """None if ipset can list sets here (kernel support included) and iptables works."""
    return _probe(options, "ipset", "list", "-n") or probe_iptables(options)


_PROBES: dict[str, Callable[[BackendOptions], str | None]] = {
    "nftables": probe_nftables,
    "ipset": probe_ipset,
    "iptables": probe_iptables,
}


def resolve(name: str, options: BackendOptions) -> str:
    """The concrete backend name for ``name``; ``auto`` probes this machine."""
    if name != AUTO:
        if name not in _FACTORIES:
            raise ConfigError(
                f"unknown firewall backend {name!r}; choose one of {', '.join(names())}"
            )
        return name
    reasons = []
    for candidate in _AUTO_ORDER:
        reason = _PROBES[candidate](options)
        if reason is None:
            return candidate
        reasons.append(f"{candidate}: {reason}")
    raise ConfigError(
        f"no firewall backend works here ({'; '.join(reasons)}); "
        "name one explicitly, or 'null' to only log bans"
    )


def create(name: str, options: BackendOptions | None = None) -> Backend:
    """A backend by name (``auto`` included), not yet started."""
    opts = options or BackendOptions()
    return _FACTORIES[resolve(name, opts)](opts)
