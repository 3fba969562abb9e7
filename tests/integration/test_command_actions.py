"""fail2ban action.d scripts run by CommandActions: real shells, real files, real iptables.

Hostile log text must reach the scripts as data, byte for byte, and never run; the lifecycle
(start on demand per family, check + repair + retry, flush or unban-each, stop) must be
fail2ban's. The iptables test runs Debian's own iptables-multiport inside a throw-away
network namespace; nothing here touches the host's firewall.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from banish.actions.base import BackendError
from banish.actions.command import CommandActions
from banish.config.actiondef import ActionDefinition, load_actions
from banish.config.loader import load_config
from banish.events import PERMANENT, Ban
from tests.integration.netns import namespace, wait_until

F2B = "/etc/fail2ban"
V4, V4B, V6 = "192.0.2.1", "192.0.2.2", "2001:db8::1"
JAIL = "sshd"
NOW = 1_700_000_000.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def write_action(root: Path, name: str, text: str) -> None:
    (root / "action.d").mkdir(exist_ok=True)
    (root / "action.d" / f"{name}.conf").write_text(text)


def actions(root: Path, *specs: str, jail: str = "sshd",
            config_dir: str | None = None) -> dict[str, tuple[ActionDefinition, ...]]:
    return {jail: load_actions(config_dir or str(root), specs, {}, jail=jail)}


def ban(address: str = V4, jail: str = "sshd", bantime: int = 600, **more: Any) -> Ban:
    """A ban decided at NOW; ``more`` are the other `Ban` fields (failures, matches...)."""
    return Ban(address, jail, NOW, bantime, **more)


def exact(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # read_text() would turn \r\n into \n


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- hostile values -----------------------------------------------------------------------

CANARY = "CANARY"
HOSTILE = [
    "$(touch {c})",
    "`touch {c}`",
    ";touch {c}",
    "a; touch {c}",
    "x\ntouch {c}\n",
    "x\r\ntouch {c}",
    "&& touch {c} ||",
    "| touch {c}",
    "' ; touch {c} ; '",
    '" ; touch {c} ; "',
    "\\\"; touch {c}; \\\"",
    "~!",
    "~root $HOME ${PATH} $0 $1 $@",
    "$((1+1)) !! *",
    "<ip> <F-USER> %(name)s <br>",
    "\\n\\\\ tab\there",
    "naïve ✓ \x1b[31m",
    "",
]

ECHO = """\
[Definition]
actionban = printf '%%s' "<matches>" > <out>/matches
            printf '%%s' <F-USER> > <out>/user
            printf '%%s' "<ipjailmatches>" > <out>/ipjailmatches
            printf '%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s' <ip> "<fid>" <failures> <bantime> <restored> "<F-NOPE>" <bancount> <time> > <out>/plain
            printf '%%s' "<raw-ticket>" > <out>/raw
            echo '<F-USER>' > <out>/single-quoted
[Init]
out = /nonexistent
"""


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_arrive_exactly_and_never_run(tmp_path: Path, template: str) -> None:
    canary = tmp_path / CANARY
    value = template.replace("{c}", str(canary))
    write_action(tmp_path, "echo", ECHO)
    backend = CommandActions(actions(tmp_path, f"echo[out={tmp_path}]"))
    hostile = ban(V4, failures=7, matches=(value, "second " + value), fields={"user": value},
                  fid=value, bantime=3600, ban_count=3)

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([hostile], NOW)

    run(go())
    assert not canary.exists()
    assert exact(tmp_path / "matches") == f"{value}\nsecond {value}"
    assert exact(tmp_path / "user") == value
    assert exact(tmp_path / "ipjailmatches") == f"{value}\nsecond {value}"
    assert exact(tmp_path / "plain") == f"192.0.2.1|{value}|7|3600|0||3|{NOW}"
    assert exact(tmp_path / "raw") == (f"ban ip=192.0.2.1 jail=sshd time={NOW} bantime=3600 "
                                       f"bancount=3 failures=7 "
                                       f"matches={[value, 'second ' + value]!r}")
    # Inside single quotes a script gets the variable's name, never the value.
    assert exact(tmp_path / "single-quoted") == '"${banish_F_USER}"\n'


@pytest.mark.skipif(not os.path.isdir(F2B + "/action.d"), reason="fail2ban is not installed")
def test_debians_sendmail_whois_matches_with_hostile_matches(tmp_path: Path) -> None:
    """Debian's mail action, unchanged; only the mailer (and whois: no network) replaced."""
    canary = tmp_path / CANARY
    mail = tmp_path / "mail"
    hostile = [t.replace("{c}", str(canary)) for t in HOSTILE if "\\" not in t]  # printf %b reads \x
    spec = (f'sendmail-whois-matches[mailcmd="cat >> {mail}", _whois_command="echo no-whois", '
            'dest=admin@example.org, sender=banish@example.org]')
    backend = CommandActions(actions(tmp_path, spec, config_dir=F2B))

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([ban(V4, failures=5, matches=tuple(hostile))], NOW)
        await backend.stop()

    run(go())
    text = exact(mail)
    assert not canary.exists()
    assert "The jail sshd has been started successfully." in text
    assert "The IP 192.0.2.1 has just been banned by Fail2Ban after\n5 attempts" in text
    assert "no-whois" in text
    assert "\n".join(hostile) in text
    assert "The jail sshd has been stopped." in text


@pytest.mark.skipif(not os.path.isdir(F2B + "/action.d"), reason="fail2ban is not installed")
def test_debians_dummy_action_lifecycle(tmp_path: Path) -> None:
    target, log = tmp_path / "target", tmp_path / "log"
    spec = f'dummy[target={target}, to_target=">> {log}"]'
    backend = CommandActions(actions(tmp_path, spec, config_dir=F2B))

    async def go() -> None:
        await backend.start([JAIL])
        assert target.exists()
        await backend.ban([ban(V4), ban(V6)], NOW)
        await backend.unban([ban(V4)])
        await backend.unban([ban(V4B)])  # never banned: nothing runs
        assert backend.applied("sshd") == {"dummy": [V6]}
        await backend.stop()

    run(go())
    assert lines(log) == ["123", "+192.0.2.1", "+2001:db8::1", "-192.0.2.1", "-*"]
    assert not target.exists()


# --- failures -----------------------------------------------------------------------------

FAILING = """\
[Definition]
actionban = echo try <ip> >> <out>/tries
            if [ -e <out>/allow ]; then echo ban <ip> >> <out>/log; else
            echo "refusing <ip>: no allow file" >&2; exit 1; fi
actionunban = echo unban <ip> >> <out>/log
[Init]
out = /nonexistent
"""


def test_failing_ban_raises_with_stderr_and_is_retried_later(tmp_path: Path) -> None:
    write_action(tmp_path, "failing", FAILING)
    backend = CommandActions(actions(tmp_path, f"failing[out={tmp_path}]"))

    async def go() -> None:
        await backend.start([JAIL])
        with pytest.raises(BackendError) as info:
            await backend.ban([ban(V4), ban(V4B)], NOW)
        message = str(info.value)
        assert "refusing 192.0.2.1: no allow file" in message
        assert "refusing 192.0.2.2: no allow file" in message
        assert "exit status 1" in message and "[sshd] action failing" in message
        assert backend.applied("sshd") == {"failing": []}
        (tmp_path / "allow").touch()
        await backend.reconcile([ban(V4), ban(V4B)], NOW)
        assert backend.applied("sshd") == {"failing": [V4, V4B]}
        await backend.reconcile([ban(V4B)], NOW)  # V4 is no longer active: lifted
        await backend.stop()

    run(go())
    # fail2ban's rule: a failed command is tried once more before it counts as failed.
    assert lines(tmp_path / "tries") == ["try 192.0.2.1"] * 2 + ["try 192.0.2.2"] * 2 + [
        "try 192.0.2.1", "try 192.0.2.2"]
    assert lines(tmp_path / "log") == ["ban 192.0.2.1", "ban 192.0.2.2", "unban 192.0.2.1",
                                       "unban 192.0.2.2"]


CHECKED = """\
[Definition]
actionstart = echo start >> <out>/calls; touch <out>/chain
actionstop = echo stop >> <out>/calls; rm -f <out>/chain
actioncheck = echo check >> <out>/calls; test -e <out>/chain
actionban = echo ban <ip> >> <out>/calls; test -e <out>/chain && echo <ip> >> <out>/chain
actionunban = echo unban <ip> >> <out>/calls; test -e <out>/chain && sed -i '/^<ip>$/d' <out>/chain
[Init]
out = /nonexistent
"""


def test_failed_ban_runs_check_repairs_and_rebans_what_the_repair_lost(tmp_path: Path) -> None:
    write_action(tmp_path, "checked", CHECKED)
    backend = CommandActions(actions(tmp_path, f"checked[out={tmp_path}]"))
    chain, calls = tmp_path / "chain", tmp_path / "calls"

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([ban(V4)], NOW)
        chain.unlink()  # someone deleted our chain
        calls.unlink()
        await backend.ban([ban(V4B)], NOW)
        assert lines(calls) == ["ban 192.0.2.2", "check", "stop", "start", "check",
                                "ban 192.0.2.2", "ban 192.0.2.1"]
        assert sorted(lines(chain)) == ["192.0.2.1", "192.0.2.2"]
        chain.unlink()
        calls.unlink()
        await backend.reconcile([ban(V4), ban(V4B)], NOW)
        assert lines(calls)[:4] == ["check", "stop", "start", "check"]
        assert sorted(lines(chain)) == ["192.0.2.1", "192.0.2.2"]
        calls.unlink()
        await backend.reconcile([ban(V4), ban(V4B)], NOW)  # all sound: only the check runs
        assert lines(calls) == ["check"]

    run(go())


def test_unban_does_not_repair_unless_allowed(tmp_path: Path) -> None:
    write_action(tmp_path, "checked", CHECKED)
    backend = CommandActions(actions(tmp_path, f"checked[out={tmp_path}]"))
    calls = tmp_path / "calls"

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([ban(V4)], NOW)
        (tmp_path / "chain").unlink()
        calls.unlink()
        with pytest.raises(BackendError, match="unban is impossible"):
            await backend.unban([ban(V4)])
        assert "start" not in lines(calls)

    run(go())


def test_unban_repairs_when_allowed(tmp_path: Path) -> None:
    write_action(tmp_path, "checked", CHECKED)
    backend = CommandActions(actions(tmp_path, f"checked[out={tmp_path}, "
                                               "actionrepair_on_unban=true]"))
    chain, calls = tmp_path / "chain", tmp_path / "calls"

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([ban(V4), ban(V4B)], NOW)
        chain.unlink()
        calls.unlink()
        await backend.unban([ban(V4)])
        assert lines(calls)[:6] == ["unban 192.0.2.1", "check", "stop", "start", "check",
                                    "unban 192.0.2.1"]
        assert lines(chain) == ["192.0.2.2"]  # the repair's loss is banned again
        assert backend.applied("sshd") == {"checked": [V4B]}

    run(go())


def test_timeout_kills_the_whole_command(tmp_path: Path) -> None:
    write_action(tmp_path, "slow", "[Definition]\nactionban = sleep 60 & echo $! > <out>/pid; "
                                   "wait\n[Init]\nout = /nonexistent\ntimeout = 0.3\n")
    backend = CommandActions(actions(tmp_path, f"slow[out={tmp_path}]"))

    async def go() -> None:
        await backend.start([JAIL])
        with pytest.raises(BackendError, match=r"timed out after 0\.3 s"):
            await backend.ban([ban(V4)], NOW)

    run(go())
    pid = int((tmp_path / "pid").read_text())

    def dead() -> bool:  # the kernel finishes a killed process asynchronously
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")

    assert wait_until(dead, limit=3), "the command's child outlived the timeout"


def test_background_child_holding_output_does_not_block(tmp_path: Path) -> None:
    write_action(tmp_path, "bg", "[Definition]\nactionban = sleep 30 & "
                                 "echo $! > <out>/pid; echo banned\n"
                                 "[Init]\nout = /nonexistent\ntimeout = 5\n")
    backend = CommandActions(actions(tmp_path, f"bg[out={tmp_path}]"))

    async def go() -> None:
        await backend.start([JAIL])
        loop = asyncio.get_running_loop()
        began = loop.time()
        await backend.ban([ban(V4)], NOW)  # done when the script exits, not when its child does
        assert loop.time() - began < 4

    try:
        run(go())
    finally:
        pid = int((tmp_path / "pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_failed_start_is_reported_and_tried_again_before_the_next_ban(tmp_path: Path) -> None:
    write_action(tmp_path, "picky", "[Definition]\nactionstart = test -e <out>/ready || "
                                    "{ echo 'not ready yet' >&2; exit 3; }\n"
                                    "actionban = echo ban <ip> >> <out>/log\n"
                                    "[Init]\nout = /nonexistent\n")
    backend = CommandActions(actions(tmp_path, f"picky[out={tmp_path}]"))

    async def go() -> None:
        with pytest.raises(BackendError, match=r"actionstart failed \(exit status 3\): "
                                               "not ready yet"):
            await backend.start([JAIL])
        (tmp_path / "ready").touch()
        await backend.ban([ban(V4)], NOW)

    run(go())
    assert lines(tmp_path / "log") == ["ban 192.0.2.1"]


# --- families, restore, reload --------------------------------------------------------------

FAMILY = """\
[Definition]
actionstart = echo start <tool> <family> >> <out>/log
actionstop = echo stop <tool> >> <out>/log
actionflush = echo flush <tool> >> <out>/log
actionban = echo ban <tool> <ip> restored=<restored> >> <out>/log
actionunban = echo unban <tool> <ip> >> <out>/log
[Init]
out = /nonexistent
tool = iptables
[Init?family=inet6]
tool = ip6tables
"""


def test_family_sections_start_on_demand_and_flush_on_stop(tmp_path: Path) -> None:
    write_action(tmp_path, "fam", FAMILY)
    backend = CommandActions(actions(tmp_path, f"fam[out={tmp_path}]"))

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([ban(V4)], NOW)
        await backend.ban([ban(V4B), ban(V6)], NOW)
        await backend.unban([ban(V6)])
        await backend.stop()

    run(go())
    assert lines(tmp_path / "log") == [
        "start iptables inet4", "ban iptables 192.0.2.1 restored=0",
        "ban iptables 192.0.2.2 restored=0",
        "start ip6tables inet6", "ban ip6tables 2001:db8::1 restored=0",
        "unban ip6tables 2001:db8::1",
        "flush iptables", "flush ip6tables",  # as fail2ban: a family that ever held a ban
        "stop iptables", "stop ip6tables",
    ]


MAIL = """\
[Definition]
norestored = 1
actionban = echo mail <ip> >> <out>/mail
"""


def test_reconcile_restores_and_norestored_actions_skip(tmp_path: Path) -> None:
    write_action(tmp_path, "fam", FAMILY)
    write_action(tmp_path, "mail", MAIL + f"[Init]\nout = {tmp_path}\n")
    backend = CommandActions(actions(tmp_path, f"fam[out={tmp_path}]", "mail"))

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([ban(V4)], NOW)
        await backend.reconcile([ban(V4, bantime=60), ban(V6, bantime=60),
                                 ban(V4B, "other", bantime=60)], NOW)

    run(go())
    assert lines(tmp_path / "log")[-2:] == ["start ip6tables inet6",
                                            "ban ip6tables 2001:db8::1 restored=1"]
    assert lines(tmp_path / "mail") == ["mail 192.0.2.1"]


def test_restored_bans_skip_norestored_actions_and_say_so(tmp_path: Path) -> None:
    """``ban(..., restored=True)``: bans re-applied after a restart. A mail action
    (``norestored``) stays quiet, a firewall action sees ``<restored>`` 1, and an unban of
    such a ban still runs the firewall's actionunban."""
    write_action(tmp_path, "fam", FAMILY)
    write_action(tmp_path, "mail", MAIL + f"[Init]\nout = {tmp_path}\n")
    backend = CommandActions(actions(tmp_path, f"fam[out={tmp_path}]", "mail"))

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([ban(V4), ban(V6)], NOW, restored=True)
        await backend.ban([ban(V4B)], NOW)
        assert backend.applied("sshd") == {"fam": [V4, V6, V4B], "mail": [V4, V6, V4B]}
        await backend.unban([ban(V4)])

    run(go())
    assert lines(tmp_path / "log") == [
        "start iptables inet4", "ban iptables 192.0.2.1 restored=1",
        "start ip6tables inet6", "ban ip6tables 2001:db8::1 restored=1",
        "ban iptables 192.0.2.2 restored=0", "unban iptables 192.0.2.1"]
    assert lines(tmp_path / "mail") == ["mail 192.0.2.2"]


def test_a_failed_ban_retried_by_reconcile_is_not_a_restored_one(tmp_path: Path) -> None:
    """The mail of a ban whose first try failed is sent when reconcile retries it; a ban
    reconcile finds missing without having seen it fail counts as restored."""
    write_action(tmp_path, "flaky", "[Definition]\nnorestored = 1\nactionban = test -e "
                                    "<out>/up && echo mail <ip> >> <out>/mail\n"
                                    f"[Init]\nout = {tmp_path}\n")
    backend = CommandActions(actions(tmp_path, "flaky"))

    async def go() -> None:
        await backend.start([JAIL])
        with pytest.raises(BackendError, match=r"actionban for 192\.0\.2\.1 failed"):
            await backend.ban([ban(V4)], NOW)
        (tmp_path / "up").touch()
        await backend.reconcile([ban(V4), ban(V4B)], NOW)
        assert backend.applied("sshd") == {"flaky": [V4, V4B]}

    run(go())
    assert lines(tmp_path / "mail") == ["mail 192.0.2.1"]


TAGS = """\
[Definition]
actionban = echo ban <ip> <bantime> <bancount> <failures> <time> >> <out>/log
actionunban = echo unban <ip> <bantime> <bancount> <failures> "<F-USER>" >> <out>/log
actionprolong = echo prolong <ip> <bantime> >> <out>/log
"""


def test_bans_over_are_skipped_and_every_call_carries_the_bans_own_tags(tmp_path: Path
                                                                       ) -> None:
    write_action(tmp_path, "tags", TAGS + f"[Init]\nout = {tmp_path}\n")
    backend = CommandActions(actions(tmp_path, "tags"))
    first = ban(V4, bantime=600, ban_count=2, failures=5)

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([first, Ban(V4B, "sshd", NOW - 700, 600)], NOW)  # V4B is over
        await backend.reconcile([first, Ban(V4B, "sshd", NOW - 700, 600)], NOW)
        await backend.ban([first._replace(bantime=PERMANENT)], NOW + 10)  # a re-ban: prolong
        await backend.unban([first._replace(failures=9, fields={"user": "x y"})])

    run(go())
    assert lines(tmp_path / "log") == [f"ban 192.0.2.1 600 2 5 {NOW}", "prolong 192.0.2.1 -1",
                                       "unban 192.0.2.1 600 2 9 x y"]


def test_reload_keeps_unchanged_actions_and_replaces_changed_ones(tmp_path: Path) -> None:
    write_action(tmp_path, "fam", FAMILY.replace(
        "[Init]\n", "actionreload = echo reload >> <out>/log\n[Init]\n", 1))
    write_action(tmp_path, "other", "[Definition]\nactionstart = echo start <name> >> "
                                    "<out>/log\nactionstop = echo stop <name> >> <out>/log\n"
                                    "actionban = echo ban <name> <ip> >> <out>/log\n")
    log = tmp_path / "log"
    first = {**actions(tmp_path, f"fam[out={tmp_path}]", f"other[out={tmp_path}]"),
             **actions(tmp_path, f"other[out={tmp_path}]", jail="web")}
    backend = CommandActions(first)

    async def go() -> None:
        await backend.start([JAIL, "web"])
        await backend.ban([ban(V4), ban(V4, jail="web")], NOW)
        log.unlink()
        backend.configure(actions(tmp_path, f"fam[out={tmp_path}]",
                                  f"other[out={tmp_path}, name=renamed]"))
        await backend.start([JAIL])
        assert lines(log) == ["stop web", "stop sshd", "reload", "start renamed"]
        assert backend.applied("sshd") == {"fam": [V4], "other-renamed": []}
        with pytest.raises(BackendError, match="no actions started"):
            await backend.ban([ban(V4, jail="web")], NOW)
        with pytest.raises(BackendError, match="no actions configured for jail"):
            await backend.start(["nosuch"])

    run(go())


# --- Debian's iptables-multiport in a network namespace ----------------------------------


def _iptables_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "iptables", "ip6tables"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt install iproute2 iptables)"
    if not os.path.isdir(F2B + "/action.d"):
        return "fail2ban's /etc/fail2ban is not installed"
    return None


def _rules(ns_name: str, tool: str) -> list[str]:
    done = subprocess.run(["ip", "netns", "exec", ns_name, tool, "-w", "-S"],
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.splitlines()


@pytest.mark.skipif(_iptables_skip() is not None, reason=str(_iptables_skip()))
def test_debian_iptables_multiport_in_a_namespace() -> None:
    (jail,) = load_config(F2B, only={"sshd"}, include_disabled=True).jails
    definitions = {"sshd": jail.actions}  # the config compiles the jail's action.d scripts
    assert [a.name for a in jail.actions] == ["iptables-multiport"]
    jump = "-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd"
    v4_rule = "-A f2b-sshd -s 192.0.2.1/32 -j REJECT --reject-with icmp-port-unreachable"
    v6_rule = "-A f2b-sshd -s 2001:db8::1/128 -j REJECT --reject-with icmp6-port-unreachable"

    with namespace() as ns:
        backend = CommandActions(definitions, netns=ns.name)

        def v4() -> list[str]:
            return _rules(ns.name, "iptables")

        def v6() -> list[str]:
            return _rules(ns.name, "ip6tables")

        async def go() -> None:
            await backend.start([JAIL])
            assert "-N f2b-sshd" not in v4()  # conditional action: started on first ban
            await backend.ban([ban(V4), ban(V6)], NOW)
            assert jump in v4() and v4_rule in v4()
            assert jump in v6() and v6_rule in v6()
            await backend.unban([ban(V4)])
            assert v4_rule not in v4() and "-N f2b-sshd" in v4()
            # Damage the structure by hand: reconcile's actioncheck notices and rebuilds.
            ns.run("iptables", "-w", "-D", "INPUT", "-p", "tcp", "-m", "multiport",
                   "--dports", "22", "-j", "f2b-sshd")
            ns.run("ip6tables", "-w", "-D", "INPUT", "-p", "tcp", "-m", "multiport",
                   "--dports", "22", "-j", "f2b-sshd")
            await backend.reconcile([ban(V4), ban(V6)], NOW)
            assert jump in v4() and v4_rule in v4()
            assert jump in v6() and v6_rule in v6()
            assert v6().count(v6_rule) == 1
            await backend.stop()
            assert not [r for r in v4() + v6() if "f2b-sshd" in r]

        run(go())


def test_unknown_jail_and_empty_batches(tmp_path: Path) -> None:
    write_action(tmp_path, "fam", FAMILY)
    backend = CommandActions(actions(tmp_path, f"fam[out={tmp_path}]"))

    async def go() -> None:
        await backend.start([JAIL])
        await backend.ban([], NOW)
        await backend.unban([])
        await backend.reconcile([], NOW)
        with pytest.raises(BackendError, match=r"\[nosuch\] no actions started"):
            await backend.ban([ban(V4, jail="nosuch")], NOW)
        await backend.stop()
        await backend.stop()

    run(go())
    assert lines(tmp_path / "log") == []
