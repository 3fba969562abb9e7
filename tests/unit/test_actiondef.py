"""Action files to scripts: Debian's whole action.d, jail.conf's shortcuts, and the precedence rules.

The precedence tests use small action files written here; the corpus tests read the installed
fail2ban package's /etc/fail2ban (never copied into the repository).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from banish.actions.escape import shell_command
from banish.actions.tickets import family_of, field_values, ticket_values
from banish.config.actiondef import (
    ActionDefinition,
    load_action,
    load_actions,
    parse_spec,
)
from banish.config.filterdef import split_specs
from banish.config.loader import load_config
from banish.errors import ConfigError
from banish.events import PERMANENT, Ban

F2B = "/etc/fail2ban"
ACTION_D = os.path.join(F2B, "action.d")
needs_f2b = pytest.mark.skipif(not os.path.isdir(ACTION_D),
                               reason="fail2ban's /etc/fail2ban is not installed")

# Files that are not actions on their own, and the one Python action: each must be refused with
# a one-line reason, never loaded as an action that silently does nothing.
NOT_LOADABLE = {
    "firewallcmd-common.conf": "is it a file that other actions only include?",
    "helpers-common.conf": "is it a file that other actions only include?",
    "mail-whois-common.conf": "is it a file that other actions only include?",
    "smtp.py": "Python action",
}
# Arguments these files expect from the user (fail2ban runs them with the literal tag).
EXPECTED_UNRESOLVED = {
    "abuseipdb.conf": ("abuseipdb_category",),
    "blocklist_de.conf": ("agent", "apikey", "email", "service"),
    "cloudflare-token.conf": ("cftoken", "cfzone"),
    "pf.conf": ("port",),
    "xarf-login-attack.conf": ("debug",),
}


def _action_files() -> list[str]:
    return sorted(os.listdir(ACTION_D)) if os.path.isdir(ACTION_D) else []


def _spec(file: str) -> str:
    return file[: -len(".conf")] if file.endswith(".conf") else file


@needs_f2b
@pytest.mark.parametrize("file", _action_files())
def test_every_debian_action_file_loads_or_fails_in_one_line(file: str) -> None:
    if file in NOT_LOADABLE:
        with pytest.raises(ConfigError) as info:
            load_action(F2B, _spec(file), {}, jail="sshd")
        message = str(info.value)
        assert "\n" not in message and NOT_LOADABLE[file] in message
        assert file.split(".")[0] in message
        return
    definition = load_action(F2B, _spec(file), {}, jail="sshd")
    assert definition.name == _spec(file)
    assert definition.scripts, "an action that loads must have at least one command"
    for text in definition.scripts.values():
        assert "%(" not in text, "interpolation left unresolved"
    assert definition.unresolved == EXPECTED_UNRESOLVED.get(file, ())


@needs_f2b
def test_debian_action_d_counts() -> None:
    files = _action_files()
    loaded = failed = 0
    for file in files:
        try:
            load_action(F2B, _spec(file), {}, jail="sshd")
            loaded += 1
        except ConfigError:
            failed += 1
    assert failed == len(NOT_LOADABLE)
    assert loaded == len(files) - len(NOT_LOADABLE) >= 55


@needs_f2b
def test_sshd_jail_of_debian_jail_conf() -> None:
    config = load_config(F2B, only={"sshd"}, include_disabled=True)
    (jail,) = config.jails
    # iptables-multiport[port="ssh", protocol="tcp", chain="<known/chain>"], compiled by the
    # config loader into the jail's action.d scripts
    (action,) = jail.actions
    assert action.name == "iptables-multiport"
    assert action.script("actionban", "inet4") == (
        "iptables -w -I f2b-sshd 1 -s <ip> -j REJECT --reject-with icmp-port-unreachable")
    assert action.script("actionban", "inet6") == (
        "ip6tables -w -I f2b-sshd 1 -s <ip> -j REJECT --reject-with icmp6-port-unreachable")
    start = action.script("actionstart", "inet4")
    assert "-I INPUT -p $proto -m multiport --dports ssh -j f2b-sshd" in start
    assert "echo 'tcp'" in start
    assert action.start_on_demand and action.families == ("inet4", "inet6")
    assert action.timeout == 60


@needs_f2b
def test_every_jail_of_debian_jail_conf_loads_its_actions() -> None:
    jails = load_config(F2B, include_disabled=True).jails
    loaded = {j.name: j.actions for j in jails}
    assert len(loaded) == len(jails) >= 80
    assert all(loaded.values())  # banaction iptables-multiport is an action.d file
    # Two copies of one action, told apart by name= (fail2ban's actname suffix).
    assert [a.name for a in loaded["nsd"]] == ["iptables-multiport-tcp",
                                               "iptables-multiport-udp"]
    assert "-p $proto" in loaded["nsd"][1].script("actionstart", "inet4")
    assert "echo 'udp'" in loaded["nsd"][1].script("actionstart", "inet4")
    # Options in a second [...] group, spread over lines.
    (ftp,) = loaded["pass2allow-ftp"]
    assert not ftp.start_on_demand and ftp.repair_on_unban
    assert ftp.script("actionban", "inet4").endswith("-j RETURN")


@pytest.fixture
def f2b_copy(tmp_path: Path) -> Path:
    """Debian's tree behind symlinks, plus a jail.local of our own."""
    if not os.path.isdir(ACTION_D):
        pytest.skip("fail2ban's /etc/fail2ban is not installed")
    for name in os.listdir(F2B):
        if name not in ("jail.d", "jail.local"):
            (tmp_path / name).symlink_to(os.path.join(F2B, name))
    return tmp_path


@pytest.mark.parametrize("shortcut, names", [
    ("action_", ["iptables-multiport"]),
    ("action_mw", ["iptables-multiport", "sendmail-whois"]),
    ("action_mwl", ["iptables-multiport", "sendmail-whois-lines"]),
    ("action_xarf", ["iptables-multiport", "xarf-login-attack"]),
])
def test_jail_conf_shortcuts_load(f2b_copy: Path, shortcut: str, names: list[str]) -> None:
    (f2b_copy / "jail.local").write_text(
        f"[sshd]\nenabled = true\nport = 22,2222\nlogpath = /var/log/auth.log\n"
        f"destemail = admin@example.org\naction = %({shortcut})s\n")
    (jail,) = load_config(str(f2b_copy), only={"sshd"}).jails
    actions = jail.actions
    assert [a.name for a in actions] == names
    assert "--dports 22,2222" in actions[0].script("actionstart", "inet4")
    if len(actions) > 1:
        mail = actions[1]
        assert mail.norestored
        assert mail.properties["name"] == "sshd"
        if shortcut != "action_xarf":
            assert mail.properties["dest"] == "admin@example.org"
    if shortcut == "action_mwl":
        assert 'logpath="/var/log/auth.log"' in actions[1].script("actionban", "inet4")


# --- precedence, with action files written here -------------------------------------------


def write_action(root: Path, name: str, text: str) -> None:
    (root / "action.d").mkdir(exist_ok=True)
    (root / "action.d" / f"{name}.conf").write_text(text)


BASIC = """\
[DEFAULT]
logpath = /dev/null
[Definition]
actionstart = start <name> <actname> <port> <chain> <greeting>
actionban = ban <ip> <port> for <bantime>s by <tool><sp>at <chain>
actionunban = unban <ip> %(helper)s
helper = log=%(logpath)s
actioncheck = check <known/port> <undefinedhelper>
undefinedhelper = help
[Init]
port = ssh
chain = INPUT
greeting = hello<br>world
tool = iptables
[Init?family=inet6]
tool = ip6tables
"""


def load(root: Path, spec: str, jail_options: dict[str, str] | None = None,
         jail: str = "sshd") -> ActionDefinition:
    return load_action(str(root), spec, jail_options or {}, jail=jail)


def test_init_defaults_and_name(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    d = load(tmp_path, "basic")
    assert d.script("actionstart", "") == "start sshd basic ssh INPUT hello\nworld"
    assert d.script("actionban", "inet4") == "ban <ip> ssh for <bantime>s by iptables at INPUT"
    assert d.script("actionban", "inet6") == "ban <ip> ssh for <bantime>s by ip6tables at INPUT"
    assert d.script("actioncheck", "") == "check ssh help"


def test_arguments_win_over_init_but_not_over_family_sections(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    d = load(tmp_path, 'basic[port="22,2222", chain=<known/chain>, tool=nft]')
    assert d.script("actionban", "inet4") == (
        "ban <ip> 22,2222 for <bantime>s by nft at INPUT")
    # fail2ban keeps [Init?family=inet6] over an argument of the same name.
    assert "by ip6tables" in d.script("actionban", "inet6")
    assert d.script("actioncheck", "") == "check ssh help"  # known/ is the file's value


def test_argument_replaces_a_command(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    d = load(tmp_path, 'basic[actionban="echo <ip> <chain>"]')
    assert d.script("actionban", "inet4") == "echo <ip> INPUT"


def test_jail_options_reach_interpolation_but_port_only_as_argument(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    d = load(tmp_path, "basic", {"logpath": "/var/log/auth.log", "port": "2222",
                                 "bantime": "1h", "chain": "FORWARD"})
    assert d.script("actionunban", "inet4") == "unban <ip> log=/var/log/auth.log"
    assert "ban <ip> ssh for <bantime>s" in d.script("actionban", "inet4")
    assert "at INPUT" in d.script("actionban", "inet4")


def test_bantime_is_always_the_bans_own(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC + "bantime = 99\n")
    d = load(tmp_path, "basic[bantime=77]")
    assert "<bantime>" in d.script("actionban", "inet4")
    assert "bantime" not in d.properties


@pytest.mark.parametrize("name, actname", [("sshd", "basic"), ("sshd-extra", "basic-extra"),
                                           ("other", "basic-other")])
def test_actname_follows_name(tmp_path: Path, name: str, actname: str) -> None:
    write_action(tmp_path, "basic", BASIC)
    assert load(tmp_path, f"basic[name={name}]").name == actname
    assert load(tmp_path, f"basic[name={name}, actname=mine]").name == "mine"


def test_two_actions_with_one_name_are_refused(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    with pytest.raises(ConfigError, match="given twice"):
        load_actions(str(tmp_path), ["basic", "basic[port=80]"], {}, jail="sshd")
    both = load_actions(str(tmp_path), ["basic", "basic[name=web]"], {}, jail="sshd")
    assert [a.name for a in both] == ["basic", "basic-web"]


def test_local_override_keeps_known_value(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    (tmp_path / "action.d" / "basic.local").write_text(
        "[Init]\nchain = %(known/chain)s_LOCAL\n[Definition]\nactionflush = flush <chain>\n")
    d = load(tmp_path, "basic")
    assert d.script("actionflush", "") == "flush INPUT_LOCAL"


def test_family_sections_choose_on_demand_start(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    write_action(tmp_path, "plain", "[Definition]\nactionban = ban <ip> <family>\n")
    d = load(tmp_path, "basic")
    assert d.start_on_demand and d.families == ("inet4", "inet6")
    p = load(tmp_path, "plain")
    assert not p.start_on_demand and p.families == ("",)
    assert p.script("actionban", "inet6") == "ban <ip> inet6"
    explicit = load(tmp_path, "plain[actionstart_on_demand=true, families=inet4]")
    assert explicit.start_on_demand and explicit.families == ("inet4",)


def test_includes_and_timeout(tmp_path: Path) -> None:
    write_action(tmp_path, "common", "[Definition]\nactionstop = stop <what>\n"
                                     "[Init]\nwhat = all\ntimeout = 2m\n")
    write_action(tmp_path, "child", "[INCLUDES]\nbefore = common.conf\n"
                                    "[Definition]\nactionban = ban <ip> <what>\n")
    d = load(tmp_path, "child")
    assert d.script("actionstop", "") == "stop all"
    assert d.timeout == 120
    assert load(tmp_path, "child[timeout=5]").timeout == 5


def test_path_spec(tmp_path: Path) -> None:
    write_action(tmp_path, "basic", BASIC)
    d = load_action(None, str(tmp_path / "action.d" / "basic.conf"), {}, jail="web")
    assert d.name == "basic" and d.properties["name"] == "web"


@pytest.mark.parametrize("text, spec, message", [
    (None, "nosuch", "unknown action 'nosuch'"),
    (None, "x.py", "Python action"),
    (None, "basic[port=", "without its ']'"),
    ("[Definition]\nactionban = <a>\n[Init]\na = <b>\nb = <a>\n", "bad", "refers to itself"),
    ("[Definition]\nactionban = %(nothing)s\n", "bad", "unknown reference %(nothing)s"),
    ("[Definition]\nactionban = x\n[Init]\ntimeout = soon\n", "bad", "invalid duration"),
    ("[Definition]\nactionban = x\nnorestored = maybe\n", "bad", "invalid boolean"),
    ("[Definition]\nfoo = bar\n", "bad", "defines none of"),
    ("[Definition]\nactionban = x\njust words\n", "bad", "cannot parse"),
])
def test_errors_are_one_line(tmp_path: Path, text: str | None, spec: str, message: str) -> None:
    write_action(tmp_path, "basic", BASIC)
    if text is not None:
        write_action(tmp_path, "bad", text)
    with pytest.raises(ConfigError) as info:
        load_actions(str(tmp_path), [spec], {}, jail="sshd", file="/etc/banish/jail.conf")
    shown = str(info.value)
    assert "\n" not in shown and message in shown
    if text is not None:
        assert "bad.conf" in shown
    else:
        assert shown.startswith("/etc/banish/jail.conf [sshd] action")


def test_unknown_lower_case_tags_are_reported_not_refused(tmp_path: Path) -> None:
    write_action(tmp_path, "x", "[Definition]\nactionban = curl <apikey> <ip> <HOST> <F-USER> "
                                "<sender_addr>\nsender = <<who>>\n[Init]\nwho = root\n"
                                "sender_addr = <sender>\n")
    d = load(tmp_path, "x")
    assert d.unresolved == ("apikey",)  # <root>, made by <<who>>, is not a mistake
    assert d.script("actionban", "inet4") == "curl <apikey> <ip> <HOST> <F-USER> <root>"


def test_copied_tree_still_resolves_shared_helpers(tmp_path: Path) -> None:
    if not os.path.isdir(ACTION_D):
        pytest.skip("fail2ban's /etc/fail2ban is not installed")
    shutil.copytree(ACTION_D, tmp_path / "action.d")
    d = load(tmp_path, 'sendmail-whois-lines[logpath="/var/log/x.log", grepmax=5]')
    ban = d.script("actionban", "inet4")
    assert 'logpath="/var/log/x.log"' in ban and "tail -n 5" in ban
    assert "<matches>" not in ban and "<ip>" in ban and "<fq-hostname>" in ban


# --- what per-ban tags hold -------------------------------------------------------------------


def test_ticket_values_come_from_the_ban() -> None:
    b = Ban("192.0.2.10", "sshd", 1700000000.5, 600, failures=5, matches=("l1", "l2"),
            ban_count=2, fields={"user": "root"})
    v = ticket_values(b)
    assert v["ip"] == v["fid"] == "192.0.2.10"
    assert v["ip-rev"] == "10.2.0.192."
    assert (v["failures"], v["bancount"], v["bantime"], v["restored"]) == ("5", "2", "600", "0")
    assert v["time"] == "1700000000.5"
    assert v["matches"] == v["ipjailmatches"] == v["ipmatches"] == "l1\nl2"
    assert v["ipfailures"] == v["ipjailfailures"] == "5"
    assert v["raw-ticket"] == ("ban ip=192.0.2.10 jail=sshd time=1700000000.5 bantime=600 "
                               "bancount=2 failures=5 matches=['l1', 'l2']")
    assert ticket_values(b, restored=True)["restored"] == "1"
    # a widened target keeps the name the log gave as <fid>
    assert ticket_values(b._replace(address="192.0.2.0/24", fid="192.0.2.10"))["fid"] == (
        "192.0.2.10")


@pytest.mark.parametrize("address, bantime, shown, rev, family", [
    ("2001:db8::1", PERMANENT, "-1", "1." + "0." * 23 + "8.b.d.0.1.0.0.2.", "inet6"),
    ("198.51.100.0/24", 1, "1", "", "inet4"),
    ("198.51.100.7", -7, "-1", "7.100.51.198.", "inet4"),
    ("2001:db8::/64", 60, "60", "", "inet6"),
])
def test_ticket_values_of_hosts_networks_and_permanent_bans(
        address: str, bantime: int, shown: str, rev: str, family: str) -> None:
    v = ticket_values(Ban(address, "sshd", 0.0, bantime))
    assert v["ip"] == address and v["bantime"] == shown and v["ip-rev"] == rev
    assert family_of(address) == family


def test_ticket_values_without_a_ban() -> None:
    empty = ticket_values(None)
    assert empty["ip"] == "" and empty["bantime"] == "0" and "time" not in empty
    assert ticket_values(None, restored=True)["restored"] == "0"  # no ban, nothing restored


def test_field_tags() -> None:
    b = Ban("192.0.2.1", "sshd", 0.0, 60,
            fields={"user": "bob", "fid": "id-1", "fport": "8080"})
    assert field_values("<F-USER> <F-ID> <F-PORT> <F-NONE> <f-user>", b) == {
        "F-USER": "bob", "F-ID": "id-1", "F-PORT": "8080", "F-NONE": ""}
    assert field_values("<F-USER>", None) == {"F-USER": ""}


def test_ticket_values_reach_a_real_shell_as_data(tmp_path: Path) -> None:
    """Every per-ban value a ``Ban`` can carry from a log goes through shell_command and
    arrives byte for byte, never run (the full hostile corpus: test_escape.py)."""
    canary = tmp_path / "ran"
    evil = f"$(touch {canary})`touch {canary}`;touch {canary}\n'\"$HOME"
    b = Ban("192.0.2.1", "sshd", 0.0, 60, failures=1, matches=(evil, evil), fid=evil,
            fields={"user": evil})
    script = ('printf "%s|" <ip> "<fid>" <matches> <ipjailmatches> <F-USER> "<raw-ticket>" '
              f'> {tmp_path}/out')
    values = {**ticket_values(b), **field_values(script, b)}
    argv = shell_command(script, values)
    assert evil not in argv[2]  # the script text carries no value
    subprocess.run(argv, check=True, timeout=10)
    assert not canary.exists()
    got = (tmp_path / "out").read_text().split("|")
    assert got[:5] == ["192.0.2.1", evil, f"{evil}\n{evil}", f"{evil}\n{evil}", evil]
    assert got[5] == values["raw-ticket"]


@pytest.mark.parametrize("text, specs", [
    ("a\nb[x=1]\n  c [y=2, z=\"3 4\"]", ("a", "b[x=1]", 'c[y=2, z="3 4"]')),
    ("a b", ("a", "b")),
    ('a[x=1, msg="one\ntwo]"][y=2]\n b', ('a[x=1, msg="one\ntwo]"][y=2]', "b")),
    ("a[x=1,\n  y=2]\n", ("a[x=1,\n  y=2]",)),
    ("a[msg=don't, x=1] b", ("a[msg=don't, x=1]", "b")),
    ("", ()),
])
def test_split_specs(text: str, specs: tuple[str, ...]) -> None:
    assert split_specs(text) == specs


@pytest.mark.parametrize("spec, parsed", [
    ("iptables", ("iptables", {})),
    ('x[port="22,2222", chain=<known/chain>][port=80, name=web]',
     ("x", {"port": "80", "chain": "<known/chain>", "name": "web"})),
    ("x [a=1] [b=']x[']", ("x", {"a": "1", "b": "]x["})),
    ("/etc/banish/action.d/y.conf[a=1]", ("/etc/banish/action.d/y.conf", {"a": "1"})),
])
def test_parse_spec(spec: str, parsed: tuple[str, dict[str, str]]) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec, message", [
    ("x[a=1", "'[' without its ']'"),
    ("x[a=1] y", "unexpected 'y' after ']'"),
    ("x[a]", "has no '='"),
    ("[a=1]", "expected NAME"),
])
def test_parse_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_spec(spec)
