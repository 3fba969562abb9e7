"""The actions stage: enforcing the daemon's bans in a firewall, in batches, and running
fail2ban's action.d scripts for them.

Public surface: the `Backend` contract and its values (`base`; bans themselves are
``banish.events.Ban``), backends by name (`registry`), and `shell_command` (`escape`), the
one way a log-derived value may reach a command line. ``command.CommandActions`` (action.d
scripts) is a ban-event subscriber, not a backend. Must not decide bans, read the clock or
keep ban state the daemon cannot rebuild.
"""

from banish.actions.base import (
    Address,
    Backend,
    BackendError,
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
