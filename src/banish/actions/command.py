"""Run fail2ban action.d scripts unchanged, for the bans the daemon publishes.

CommandActions is not a firewall `Backend`: it is a subscriber of the ban event stream (the
daemon hands it each batch of bans, restores and unbans), so a slow script never delays the
firewall. Owns the lifecycle fail2ban gives a command action -- ``actionstart`` (per address
family, on demand when the file has ``[Init?family=...]`` sections), ``actionban`` /
``actionunban`` with ``actioncheck`` + repair + one retry when a command fails,
``actionflush`` or per-ban unbans then ``actionstop`` -- and running each command (timeout,
process group, output, exit status, through ``banish.process``). Every command goes through `shell_command`, so values
from logs and DNS (``<matches>``, ``<F-USER>``, ``<ip-host>``...) reach the shell as data,
never as code. Must not decide bans, read configuration or build scripts:
``config/actiondef.py`` produces the text, `tickets` the tag values of a ``Ban``, the daemon
decides.

Differences from the native firewall backends, by nature of shell scripts:

- a call is not a transaction: every ban of a batch is tried, the ones that fail are named in
  one `BackendError` and the others stay applied;
- scripts cannot list what the kernel holds, so the backend remembers what it applied.
  `reconcile` bans what is missing from that record, unbans what should no longer be there,
  and runs ``actioncheck`` (repairing and re-banning when it fails) to notice hand-made
  damage such as a deleted jump rule. Damage that ``actioncheck`` cannot see (a rule deleted
  inside the action's own chain) stays until the ban ends;
- ban timeouts are the daemon's business: command actions have none (``<bantime>`` is the
  ban's own duration, ``-1`` for a permanent one); a ban already over is not applied.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..config.actiondef import DYNAMIC_TAGS, ActionDefinition
from ..events import Ban
from ..process import one_line, run_process
from .base import BackendError
from .escape import shell_command
from .tickets import family_of, field_values, ticket_values
from .tools import netns_prefix

__all__ = ["CommandActions"]

log = logging.getLogger(__name__)

_OUTPUT_LIMIT = 2000
"""Characters of a command's output shown in a log line or an error."""
_STARTED, _HAS_BANS = 1, 2
_IN_USE = _STARTED | _HAS_BANS


class _Ticket(NamedTuple):
    """A ban as an action applied it: fail2ban's ticket, with its ``restored`` flag."""

    ban: Ban
    restored: bool = False


@dataclass(slots=True)
class _Action:
    """One running action of one jail: what fail2ban's CommandAction keeps, plus the record
    (by address text)."""

    definition: ActionDefinition
    started: dict[str, int] = field(default_factory=dict)
    executed: dict[str, dict[str, str]] = field(default_factory=dict)
    banned: dict[str, _Ticket] = field(default_factory=dict)
    lost: dict[str, _Ticket] = field(default_factory=dict)
    """Bans a repair (stop + start) wiped out; banned again before the call returns."""
    failed: dict[str, bool] = field(default_factory=dict)
    """Bans whose ``actionban`` failed, with their ``restored`` flag: `reconcile` retries
    them as they were, where any other ban missing from the record counts as restored."""
    start_failed: bool = False

    @property
    def label(self) -> str:
        return f"[{self.definition.jail}] action {self.definition.name}"


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    error: str = ""


class CommandActions:
    """fail2ban action.d scripts for the daemon's bans: each jail runs its list of actions in
    order.

    ``configure`` gives the definitions (``load_actions`` per jail); `start` then starts the
    named jails, and on a later call (reload) stops jails no longer named and restarts actions
    whose definition changed. Commands run one at a time, as fail2ban runs them, under
    ``prefix`` (``ip netns exec NS`` for ``netns``) with each action's ``timeout``; ``shell``
    runs each script, ``clock`` gives ``<time>`` to commands that run without a ban. A call
    tries everything it was given and then raises one `BackendError` naming what failed.
    """

    def __init__(
        self,
        definitions: Mapping[str, Sequence[ActionDefinition]] | None = None,
        *,
        netns: str | None = None,
        prefix: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        shell: str = "/bin/sh",
    ) -> None:
        self._definitions: dict[str, tuple[ActionDefinition, ...]] = {}
        self._running: dict[str, list[_Action]] = {}
        self._prefix = [*netns_prefix(netns), *prefix]
        self._clock = clock
        self._shell = shell
        self._lock = asyncio.Lock()
        self._banned_total: dict[str, int] = {}
        self._hostnames: dict[str, str] = {}
        if definitions is not None:
            self.configure(definitions)

    def configure(self, definitions: Mapping[str, Sequence[ActionDefinition]]) -> None:
        """Replace the definitions (jail name -> its actions); takes effect at the next `start`."""
        self._definitions = {jail: tuple(defs) for jail, defs in definitions.items()}

    def applied(self, jail: str) -> dict[str, list[str]]:
        """The addresses each action of ``jail`` has applied (for status and tests)."""
        return {a.definition.name: list(a.banned) for a in self._running.get(jail, [])}

    # -- what the daemon calls ------------------------------------------------------------

    async def start(self, jails: Sequence[str]) -> None:
        """Start the actions of the named jails; on a later call (reload) stop the jails no
        longer named, restart actions whose definition changed and run ``actionreload`` of
        the others."""
        if isinstance(jails, str):
            raise TypeError("start takes a sequence of jail names, not one name")
        async with self._lock:
            errors: list[str] = []
            names = list(jails)
            missing = [n for n in names if n not in self._definitions]
            if missing:
                raise BackendError(f"no actions configured for jail(s) {', '.join(missing)}")
            for jail in [j for j in self._running if j not in names]:
                errors += await self._retire(self._running.pop(jail))
            for jail in names:
                old = {a.definition.name: a for a in self._running.get(jail, [])}
                actions: list[_Action] = []
                fresh: list[_Action] = []
                retired: list[_Action] = []
                for definition in self._definitions[jail]:
                    previous = old.pop(definition.name, None)
                    if previous is not None and previous.definition == definition:
                        actions.append(previous)
                        continue
                    if previous is not None:
                        retired.append(previous)
                    action = _Action(definition)
                    actions.append(action)
                    fresh.append(action)
                errors += await self._retire([*retired, *old.values()])
                self._running[jail] = actions
                for action in actions:
                    if action in fresh:
                        if action.definition.unresolved:
                            log.warning("%s: <%s> is not defined (a missing argument?); its "
                                        "commands get the tag as literal text", action.label,
                                        ">, <".join(action.definition.unresolved))
                        error = await self._start(action)
                        action.start_failed = error is not None
                    else:
                        error = await self._operation(action, "actionreload", None)
                    if error:
                        errors.append(f"{action.label}: {error}")
            self._raise(errors, "start")

    async def ban(self, bans: Sequence[Ban], now: float, *, restored: bool = False) -> None:
        """Run ``actionban`` of every action of each ban's jail (``actionprolong`` for a ban
        already applied). ``restored`` marks bans re-applied after a restart: ``norestored``
        actions skip them and ``<restored>`` is 1. A ban already over at ``now`` is skipped."""
        async with self._lock:
            errors: list[str] = []
            for ban in bans:
                if ban.remaining(now) == 0:
                    continue
                actions = self._running.get(ban.jail)
                if actions is None:
                    errors.append(f"[{ban.jail}] no actions started for this jail")
                    continue
                self._banned_total[ban.jail] = self._banned_total.get(ban.jail, 0) + 1
                for action in actions:
                    error = await self._ban(action, _Ticket(ban, restored))
                    if error:
                        errors.append(f"{action.label}: {error}")
            errors += await self._restore_lost()
            self._raise(errors, "ban")

    async def unban(self, bans: Sequence[Ban]) -> None:
        """Run ``actionunban`` for each ban an action applied (with this ban's tags); a ban
        no action applied is no error."""
        async with self._lock:
            errors: list[str] = []
            for ban in bans:
                for action in self._running.get(ban.jail, []):
                    action.lost.pop(ban.address, None)
                    action.failed.pop(ban.address, None)
                    error = await self._unban(action, ban)
                    if error:
                        errors.append(f"{action.label}: {error}")
            errors += await self._restore_lost()
            self._raise(errors, "unban")

    async def reconcile(self, active: Sequence[Ban], now: float) -> None:
        """Make every started action hold exactly the ``active`` bans of its jail: check (and
        repair) each action, unban what is no longer active, ban what is missing -- as a
        restored ban, unless its own ``actionban`` failed before."""
        async with self._lock:
            errors: list[str] = []
            wanted: dict[str, dict[str, Ban]] = {}
            for ban in active:
                if ban.remaining(now) == 0:
                    continue
                if ban.jail in self._running:
                    wanted.setdefault(ban.jail, {})[ban.address] = ban
                else:
                    log.debug("reconcile: jail %s has no command actions; %s skipped",
                              ban.jail, ban.address)
            for jail, actions in self._running.items():
                want = wanted.get(jail, {})
                for action in actions:
                    errors += await self._consistency_check(action)
                    for address in [a for a in action.lost if a not in want]:
                        del action.lost[address]
                    for address in [a for a in action.failed if a not in want]:
                        del action.failed[address]
                    for address in [a for a in action.banned if a not in want]:
                        error = await self._unban(action, action.banned[address].ban)
                        if error:
                            errors.append(f"{action.label}: {error}")
                    for address, ban in want.items():
                        if address in action.banned or address in action.lost:
                            continue
                        restored = action.failed.get(address, True)
                        error = await self._ban(action, _Ticket(ban, restored))
                        if error:
                            errors.append(f"{action.label}: {error}")
            errors += await self._restore_lost()
            self._raise(errors, "reconcile")

    async def stop(self) -> None:
        """Take every action out of service: flush (or unban each), then ``actionstop``."""
        async with self._lock:
            errors: list[str] = []
            for jail in list(self._running):
                errors += await self._retire(self._running.pop(jail))
            self._raise(errors, "stop")

    # -- fail2ban's command-action lifecycle -------------------------------------------------

    async def _ban(self, action: _Action, ticket: _Ticket, operation: str = "actionban"
                   ) -> str | None:
        definition = action.definition
        address = ticket.ban.address
        if ticket.restored and definition.norestored:
            action.banned[address] = ticket
            return None
        if address in action.banned and operation == "actionban":
            # Already applied: only a longer ban time has something to tell the action.
            action.banned[address] = ticket
            if definition.defines("actionprolong"):
                return await self._process(action, "actionprolong", ticket)
            return None
        family = family_of(address)
        error = None
        if (definition.start_on_demand or action.start_failed) and not action.started.get(family):
            error = await self._start(action, family, force=True)
            if not error:
                action.start_failed = False
        if not error:
            error = await self._process(action, operation, ticket)
        if error:
            action.failed[address] = ticket.restored
            return error
        action.failed.pop(address, None)
        action.started[family] = action.started.get(family, 0) | _STARTED | _HAS_BANS
        action.banned[address] = ticket
        return None

    async def _unban(self, action: _Action, ban: Ban) -> str | None:
        """``actionunban`` with ``ban``'s tags, if the action applied a ban of its address."""
        applied = action.banned.get(ban.address)
        if applied is None:
            return None
        if action.started.get(family_of(ban.address), 0) & _HAS_BANS:
            error = await self._process(action, "actionunban", _Ticket(ban, applied.restored))
            if error:
                return error  # still recorded: the next reconcile tries again
        action.banned.pop(ban.address, None)
        action.lost.pop(ban.address, None)  # a repair on the way may have moved it there
        return None

    async def _start(self, action: _Action, family: str | None = None, *,
                     force: bool = False) -> str | None:
        if action.definition.start_on_demand and not force:
            return None
        families = [family] if family is not None else list(action.definition.families)

        def started(fam: str, ok: bool) -> None:
            if ok:
                self._executed(action, "actionstop", fam, None)
                action.started[fam] = _STARTED

        return await self._operation(action, "actionstart", families, started)

    async def _stop(self, action: _Action, family: str | None = None) -> str | None:
        if family is None:
            families = [f for f, v in action.started.items() if v]
            action.started = {}
        elif family in action.started:
            action.started[family] = 0
            families = [family]
        else:
            return None
        if not families:
            return None

        def stopped(fam: str, ok: bool) -> None:
            if ok:
                self._executed(action, "actionstart", fam, None)

        return await self._operation(action, "actionstop", families, stopped)

    async def _retire(self, actions: Sequence[_Action]) -> list[str]:
        """Take actions out of service: flush (or unban one by one), then stop in reverse."""
        errors: list[str] = []
        for action in actions:
            action.lost.clear()
            action.failed.clear()
            if action.definition.defines("actionflush"):
                families = [f for f, v in action.started.items() if v & _IN_USE == _IN_USE]

                def flushed(fam: str, ok: bool, action: _Action = action) -> None:
                    if ok and action.started.get(fam):
                        action.started[fam] &= ~_HAS_BANS

                error = await self._operation(action, "actionflush", families, flushed)
                if error:
                    errors.append(f"{action.label}: {error}")
                action.banned.clear()
                continue
            for ticket in list(action.banned.values()):
                error = await self._unban(action, ticket.ban)
                if error:
                    errors.append(f"{action.label}: {error}")
            action.banned.clear()
        for action in reversed(actions):
            error = await self._stop(action)
            if error:
                errors.append(f"{action.label}: {error}")
        return errors

    async def _process(self, action: _Action, operation: str, ticket: _Ticket) -> str | None:
        """Run a ban-time command; if it fails, check (and repair) the action, then retry once."""
        family = family_of(ticket.ban.address)
        script = action.definition.script(operation, family)
        if not script:
            return None
        tries = 0
        outcome = _Outcome(True)
        while tries < 2:
            if tries and action.definition.defines("actioncheck"):
                unban = operation == "actionunban"
                verdict = await self._invariant_check(
                    action, family, repair=not unban or action.definition.repair_on_unban,
                    force_start=not unban)
                if verdict != 1:
                    return outcome.error + (" (and actioncheck failed: "
                                            + ("unban is impossible)" if verdict < 0
                                               else "could not restore the action)"))
            outcome = await self._run(action, operation, script, ticket, family)
            tries += 1
            if outcome.ok:
                return None
        return outcome.error

    async def _invariant_check(self, action: _Action, family: str, *, repair: bool,
                               force_start: bool = True) -> int:
        """1: the action is sound (or was repaired); 0: repair failed; -1: repair not allowed."""
        if not force_start and family not in action.started:
            return 1
        check = action.definition.script("actioncheck", family)
        if not check or (await self._run(action, "actioncheck", check, None, family)).ok:
            return 1
        if not repair:
            log.error("%s: actioncheck failed; not repairing for an unban", action.label)
            return -1
        log.error("%s: actioncheck failed; trying to restore a sane environment", action.label)
        self._mark_lost(action, family)
        repair_script = action.definition.script("actionrepair", family)
        if repair_script:
            if not (await self._run(action, "actionrepair", repair_script, None, family)).ok:
                action.started[family] = 0
                log.critical("%s: unable to restore the environment", action.label)
                return 0
            action.started[family] = _STARTED
        else:
            await self._stop(action, family)
            await self._start(action, family,
                              force=force_start or not action.definition.start_on_demand)
        if action.started.get(family) and not (
                await self._run(action, "actioncheck", check, None, family)).ok:
            log.critical("%s: unable to restore the environment", action.label)
            return 0
        return 1

    async def _consistency_check(self, action: _Action) -> list[str]:
        if not action.definition.defines("actioncheck"):
            return []
        errors = []
        sound: set[str] = set()  # one check per distinct script: "" and "inet4" often share it
        for family, state in list(action.started.items()):
            check = action.definition.script("actioncheck", family)
            if not state or check in sound:
                continue
            if await self._invariant_check(action, family, repair=True) == 1:
                sound.add(check)
            else:
                action.started[family] = 0
                self._executed(action, "actionstart", family, None)
                errors.append(f"{action.label}: actioncheck failed and repair did not help")
        return errors

    def _mark_lost(self, action: _Action, family: str) -> None:
        # An action without family sections has one structure for both families.
        every = family == "" or action.definition.families == ("",)
        for address in [a for a in action.banned if every or family_of(a) == family]:
            action.lost[address] = action.banned.pop(address)

    async def _restore_lost(self) -> list[str]:
        """Ban again what a repair wiped out (``actionreban`` when the action has one)."""
        errors: list[str] = []
        for actions in self._running.values():
            for action in actions:
                lost, action.lost = action.lost, {}
                op = "actionreban" if action.definition.defines("actionreban") else "actionban"
                for ticket in lost.values():
                    error = await self._ban(action, ticket, op)
                    if error:
                        errors.append(f"{action.label}: {error}")
        return errors

    async def _operation(self, action: _Action, operation: str, families: Sequence[str] | None,
                         after: Callable[[str, bool], None] | None = None) -> str | None:
        """Run a start/stop/flush-like command once per family, skipping identical repeats."""
        if families is None:
            families = [f for f, v in action.started.items() if v]
        errors: list[str] = []
        for family in families:
            script = action.definition.script(operation, family)
            ok = True
            done_elsewhere = [s for f, s in action.executed.get(operation, {}).items()
                              if f != family]
            if script and script not in done_elsewhere:
                outcome = await self._run(action, operation, script, None, family)
                ok = outcome.ok
                if not ok:
                    errors.append(outcome.error)
            if after is not None:
                after(family, ok)
            self._executed(action, operation, family, script if ok else None)
        return "; ".join(errors) or None

    @staticmethod
    def _executed(action: _Action, operation: str, family: str, script: str | None) -> None:
        """Remember (or forget) that ``script`` ran for ``family``, so that an action whose
        command is the same for both families runs it once."""
        done = action.executed.setdefault(operation, {})
        if script:
            done[family] = script
            return
        # Forget every family that ran the same text: a repair that stops "inet4" of an action
        # started for "" must be able to start it again.
        gone = done.pop(family, None) or action.definition.script(operation, family)
        for fam in [f for f, s in done.items() if s == gone]:
            del done[fam]

    # -- running one command ------------------------------------------------------------------

    async def _run(self, action: _Action, operation: str, script: str, ticket: _Ticket | None,
                   family: str) -> _Outcome:
        values = await self._values(script, action, ticket, family)
        argv = [*self._prefix, *shell_command(script, values, shell=self._shell)]
        what = operation + (f" for {ticket.ban.address}" if ticket is not None else "")
        log.debug("%s: %s: %s", action.label, what, script)
        done = await run_process(argv, timeout=action.definition.timeout)
        stdout = one_line(done.stdout, _OUTPUT_LIMIT)
        message = done.failure(what, detail_limit=_OUTPUT_LIMIT)
        if message is None:
            stderr = one_line(done.stderr, _OUTPUT_LIMIT)
            if stdout or stderr:
                log.debug("%s: %s output: %s%s", action.label, what, stdout,
                          f" (stderr: {stderr})" if stderr else "")
            return _Outcome(True)
        if done.timed_out:
            message += " (timeout option)"
        log.error("%s: %s", action.label, message)
        if stdout:
            log.debug("%s: %s output: %s", action.label, what, stdout)
        return _Outcome(False, message)

    async def _values(self, script: str, action: _Action, ticket: _Ticket | None,
                      family: str) -> dict[str, str]:
        """The per-run tags ``script`` uses; DNS (``<ip-host>``) is asked only when used."""
        used = {tag for tag in DYNAMIC_TAGS if f"<{tag}>" in script}
        ban = ticket.ban if ticket is not None else None
        values = ticket_values(ban, restored=ticket is not None and ticket.restored)
        values = {tag: values[tag] for tag in used if tag in values}
        if "time" in used and "time" not in values:
            values["time"] = str(float(self._clock()))
        for tag in used & {"fq-hostname", "sh-hostname"}:
            values[tag] = await self._hostname(tag)
        if "ip-host" in used:
            values["ip-host"] = await _host_of(ban.address) if ban is not None else ""
        if ban is not None and "jail.banned" in used:
            values["jail.banned"] = str(len(action.banned) + (ban.address not in action.banned))
        if "jail.banned_total" in used:
            values["jail.banned_total"] = str(self._banned_total.get(action.definition.jail, 0))
        for tag in used - values.keys():
            values[tag] = "0"  # jail.found*: the failure tracker is not visible here
        values.update(field_values(script, ban))
        return values

    async def _hostname(self, tag: str) -> str:
        if tag not in self._hostnames:
            loop = asyncio.get_running_loop()
            self._hostnames[tag] = (await loop.run_in_executor(None, _own_fqdn)
                                    if tag == "fq-hostname" else socket.gethostname())
        return self._hostnames[tag]

    @staticmethod
    def _raise(errors: list[str], call: str) -> None:
        if errors:
            shown = "; ".join(errors[:5])
            more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
            raise BackendError(f"action.d {call}: {shown}{more}")


def _own_fqdn() -> str:
    """This host's full name, as fail2ban finds it: the resolver's canonical name for the
    host name (one that extends the host name preferred), else Python's ``getfqdn``.

    ``socket.getfqdn`` alone often answers ``localhost`` where /etc/hosts lists that first.
    """
    host = socket.gethostname()
    try:
        found = socket.getaddrinfo(host, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return socket.getfqdn(host)
    names = [info[3] for info in found if info[3]]
    longer = [n for n in names if n.startswith(host + ".")]
    return (longer or names or [socket.getfqdn(host)])[0]


async def _host_of(ip: str) -> str:
    loop = asyncio.get_running_loop()
    try:
        host, _ = await asyncio.wait_for(
            loop.getnameinfo((ip, 0), socket.NI_NAMEREQD), timeout=10)
    except (TimeoutError, OSError):
        return ""
    return host
