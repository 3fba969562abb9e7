"""The actions stage: enforcing the daemon's ban decisions in a firewall, in batches.

Public surface: the `Backend` contract and its values (`base`), backends by name (`registry`),
and `shell_command` (`escape`), the one way a log-derived value may reach a command line.
Must not decide bans, read the clock or keep ban state the daemon cannot rebuild.
"""

from banish.actions.base import (
    Address,
    Backend,
    BackendError,
    BanEntry,
    Blocktype,
    JailFirewall,
    Network,
    Port,
    Transport,
    as_network,
)
from banish.actions.escape import shell_command
from banish.actions.registry import AUTO, BackendOptions, create, names, resolve

__all__ = [
    "AUTO",
    "Address",
    "Backend",
    "BackendError",
    "BackendOptions",
    "BanEntry",
    "Blocktype",
    "JailFirewall",
    "Network",
    "Port",
    "Transport",
    "as_network",
    "create",
    "names",
    "resolve",
    "shell_command",
]
