"""Running a firewall tool (nft, ipset, iptables-save/-restore) for a native backend.

Owns the ``ip netns exec NS`` prefix of the backends' ``netns`` option and the one rule for a
tool's failure: a `BackendError` naming the command and quoting the start of its stderr.
Must not build firewall commands or parse output; the process itself is run by
``banish.process.run_process``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from banish.actions.base import BackendError
from banish.process import run_process

_NOISE = (b"Try `", b"#")
"""stderr lines of iptables-restore that only point at ``--help`` or echo the input."""


def netns_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a tool inside network namespace ``netns`` (none for None)."""
    return ["ip", "netns", "exec", netns] if netns else []


async def run_tool(argv: Sequence[str], stdin: bytes | None, timeout: float) -> bytes:
    """Run one firewall tool; its whole stdout, or `BackendError` naming the tool and its
    message.

    A tool that outlives ``timeout`` (or a cancelled caller) is killed with its process
    group: nft and iptables-restore commit at their end, ipset applies idempotent commands as
    it reads them, so a killed run leaves nothing or a prefix the next call completes.
    """
    done = await run_process(argv, timeout=timeout, stdin=stdin, limit=None)
    what = " ".join(a for a in argv if not a.startswith("--wait"))
    if done.problem is None and done.returncode != 0:
        kept = [ln for ln in done.stderr.splitlines() if not ln.strip().startswith(_NOISE)]
        done = replace(done, stderr=b"\n".join(kept[:3]))
    message = done.failure(what)
    if message is not None:
        raise BackendError(message)
    return done.stdout
