"""The command table and wire format: CLI spellings -> canonical requests, request checking,
responses, bulk slicing, and the human renderings."""

from __future__ import annotations

import argparse
import inspect
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from banish.cli import client
from banish.cli.commands import add_control_verbs
from banish.errors import ConfigError
from banish.protocol import (
    CHUNK,
    COMMANDS,
    MAX_REQUEST,
    MAX_WORD,
    VERSION,
    CommandError,
    DaemonUnavailable,
    ProtocolError,
    Request,
    View,
    encode_error,
    encode_result,
    is_address,
    merge_results,
    parse_request,
    parse_response,
    socket_path,
    split,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banish")
    p.add_argument("--socket")
    add_control_verbs(p.add_subparsers(dest="verb", required=True))
    return p


def translate(*argv: str) -> Request:
    args = parser().parse_args(argv)
    cmd = next(c for c in COMMANDS if c.name == args.verb)
    return cmd.translate(vars(args))


# -- CLI spellings --------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "cmd", "args"), [
    (["ping"], "ping", {}),
    (["stop"], "stop", {}),
    (["status"], "status", {"jail": None, "fleet": False}),
    (["status", "sshd"], "status", {"jail": "sshd", "fleet": False}),
    (["status", "--fleet"], "status", {"jail": None, "fleet": True}),
    (["ban", "sshd", "192.0.2.1", "2001:db8::/64"], "ban",
     {"jail": "sshd", "ips": ["192.0.2.1", "2001:db8::/64"]}),
    (["ban", "sshd", "-"], "ban", {"jail": "sshd", "ips": ["-"]}),
    (["unban", "sshd", "192.0.2.1"], "unban", {"ips": ["192.0.2.1"], "jail": "sshd", "all": False}),
    (["unban", "192.0.2.1", "192.0.2.2"], "unban",
     {"ips": ["192.0.2.1", "192.0.2.2"], "jail": None, "all": False}),
    (["unban", "-"], "unban", {"ips": ["-"], "jail": None, "all": False}),
    (["unban", "--all"], "unban", {"ips": None, "jail": None, "all": True}),
    (["unban", "--all", "sshd"], "unban", {"ips": None, "jail": "sshd", "all": True}),
    (["banned"], "banned", {"ip": None, "jail": None}),
    (["banned", "192.0.2.1"], "banned", {"ip": "192.0.2.1", "jail": None}),
    (["banned", "--jail", "sshd"], "banned", {"ip": None, "jail": "sshd"}),
    (["reload"], "reload", {"jail": None, "unban": False, "i_know": False, "session": None}),
    (["reload", "sshd"], "reload", {"jail": "sshd", "unban": False, "i_know": False, "session": None}),
    (["reload", "--unban"], "reload", {"jail": None, "unban": True, "i_know": False, "session": None}),
    (["reload", "--unban", "sshd"], "reload", {"jail": "sshd", "unban": True, "i_know": False, "session": None}),
    (["reload", "sshd", "--unban"], "reload", {"jail": "sshd", "unban": True, "i_know": False, "session": None}),
    (["get", "sshd", "maxretry"], "get", {"jail": "sshd", "param": "maxretry"}),
    (["get", "sshd", "actions"], "get", {"jail": "sshd", "param": "actions"}),
    (["get", "loglevel"], "get", {"jail": None, "param": "loglevel"}),
    (["get", "dbpurgeage"], "get", {"jail": None, "param": "dbpurgeage"}),
    (["set", "sshd", "bantime", "-1"], "set", {"jail": "sshd", "param": "bantime", "value": "-1"}),
    (["set", "loglevel", "DEBUG"], "set", {"jail": None, "param": "loglevel", "value": "DEBUG"}),
    (["set", "sshd", "addignoreip", "192.0.2.1", "10.0.0.0/8", "host.example"], "set",
     {"jail": "sshd", "param": "addignoreip", "value": "192.0.2.1 10.0.0.0/8 host.example"}),
    (["set", "sshd", "delignoreip", "192.0.2.1"], "set",
     {"jail": "sshd", "param": "delignoreip", "value": "192.0.2.1"}),
])
def test_cli_spelling_gives_canonical_request(argv: list[str], cmd: str,
                                              args: dict[str, Any]) -> None:
    request = translate(*argv)
    assert request == Request(cmd, args)
    # whatever the CLI builds, the daemon's checker accepts unchanged
    assert parse_request(request.encode()) == request


@pytest.mark.parametrize(("fail2ban", "banish"), [
    (["set", "sshd", "banip", "192.0.2.1", "192.0.2.2"], ["ban", "sshd", "192.0.2.1", "192.0.2.2"]),
    (["set", "sshd", "unbanip", "192.0.2.1"], ["unban", "sshd", "192.0.2.1"]),
    (["set", "sshd", "banip", "-"], ["ban", "sshd", "-"]),
    (["get", "sshd", "banned"], ["banned", "--jail", "sshd"]),
])
def test_fail2ban_spellings_map_to_the_same_command(fail2ban: list[str],
                                                     banish: list[str]) -> None:
    assert translate(*fail2ban) == translate(*banish)


@pytest.mark.parametrize(("argv", "view"), [
    (["get", "sshd", "banip"], "addresses"),
    (["get", "sshd", "banip", "--with-time"], "with-time"),
    (["get", "--with-time", "sshd", "banip"], "with-time"),
])
def test_get_banip_asks_banned_and_keeps_fail2bans_view_on_the_client(argv: list[str],
                                                                     view: View) -> None:
    request = translate(*argv)
    assert request == Request("banned", {"ip": None, "jail": "sshd"}, view)
    # the view is the client's: the daemon sees exactly what 'banned --jail sshd' sends
    assert request.encode() == translate("banned", "--jail", "sshd").encode()
    assert parse_request(request.encode()).view == ""


@pytest.mark.parametrize(("argv", "message"), [
    (["ban", "sshd", "192.0.2.1", "not-an-ip"], "ban: not an IP address or network: 'not-an-ip'"),
    (["ban", "sshd", "-", "192.0.2.1"], "must be the only address"),
    (["unban"], "give one or more addresses"),
    (["unban", "sshd"], "give one or more addresses"),
    (["unban", "sshd", "nope"], "not an IP address or network: 'nope'"),
    (["unban", "--all", "sshd", "192.0.2.1"], "at most a jail"),
    (["banned", "host.example"], "not an IP address"),
    (["set", "sshd", "bantime", "1", "2"], "set sshd bantime: expected one value, got 2"),
    (["set", "sshd", "banip", "x"], "set sshd banip: not an IP address"),
    (["get", "sshd"], "get sshd: expected JAIL PARAM, or a daemon setting (loglevel, "
                      "logtarget, dbfile, dbpurgeage)"),
    (["get", "loglevel", "--with-time"], "--with-time goes with 'get JAIL banip'"),
    (["get", "sshd", "banned", "--with-time"], "--with-time goes with 'get JAIL banip'"),
    (["set", "sshd", "maxretry"], "set sshd: expected JAIL PARAM VALUE, or a daemon setting "
                                  "(loglevel) and its value"),
    (["set", "logtarget", "/tmp/x.log"], "set logtarget: read-only at run time"),
    (["set", "dbfile", "/tmp/x.db"], "set dbfile: read-only at run time"),
    (["set", "loglevel", "DEBUG", "INFO"], "set loglevel: expected one value, got 2"),
    (["set", "dbfile", "a", "b"], "set dbfile: read-only at run time"),
    (["get", "loglevel", "sshd"], "get loglevel: a daemon setting takes no further words, "
                                  "got 'sshd'"),
])
def test_bad_command_lines_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        translate(*argv)


def test_every_command_has_help_and_a_result_shape() -> None:
    p = argparse.ArgumentParser(prog="banish")
    verbs = p.add_subparsers(dest="verb")
    add_control_verbs(verbs)
    for cmd in COMMANDS:
        assert cmd.summary and cmd.description and cmd.result
        text = verbs.choices[cmd.name].format_help()
        assert "--json" in text and "--json prints:" in text and "--socket" in text
        # the shape keeps its own line breaks (long lines are wrapped)
        assert " ".join(cmd.result.split()) in " ".join(text.split())
        assert (cmd.result.count("\n") + 1) <= text.split("--json prints:")[1].count("\n")
    top = p.format_help()
    for cmd in COMMANDS:
        assert cmd.name in top


def test_is_address() -> None:
    for good in ["192.0.2.1", "2001:db8::1", "192.0.2.0/24", "2001:db8::/64", "10.0.0.1/8",
                 "::ffff:192.0.2.1"]:
        assert is_address(good), good
    for bad in ["", "-", "sshd", "192.0.2.256", "host.example", "1.2.3.4/33", "1.2.3.4 "]:
        assert not is_address(bad), bad


# -- wire format ---------------------------------------------------------------------------

def test_request_defaults_are_filled_in() -> None:
    assert parse_request(b'{"v": 1, "cmd": "unban", "args": {"ips": ["192.0.2.1"]}}') == \
        Request("unban", {"ips": ["192.0.2.1"], "jail": None, "all": False})
    assert parse_request(b'{"v": 1, "cmd": "ping"}') == Request("ping", {})


@pytest.mark.parametrize(("line", "message"), [
    (b"{not json", "malformed request: not JSON"),
    (b"\xff\xfe", "malformed request: not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"cmd": "ping"}', "unsupported protocol version None"),
    (b'{"v": 2, "cmd": "ping"}', "unsupported protocol version 2"),
    (b'{"v": 1, "cmd": 3}', "'cmd' must be a string"),
    (b'{"v": 1, "cmd": "launch"}', "unknown command 'launch' (commands: ban, banned, get"),
    (b'{"v": 1, "cmd": "ping", "args": []}', "'args' must be a JSON object"),
    (b'{"v": 1, "cmd": "status", "args": {"jail": "a", "x": 1}}', "unexpected argument 'x'"),
    (b'{"v": 1, "cmd": "ban", "args": {"jail": "a"}}', "missing argument 'ips' for 'ban'"),
    (b'{"v": 1, "cmd": "ban", "args": {"jail": "a", "ips": []}}', "non-empty list of strings"),
    (b'{"v": 1, "cmd": "ban", "args": {"jail": "a", "ips": [1]}}', "non-empty list of strings"),
    (b'{"v": 1, "cmd": "ban", "args": {"jail": null, "ips": ["1.2.3.4"]}}',
     "bad argument 'jail' for 'ban': expected a string"),
    (b'{"v": 1, "cmd": "unban", "args": {"all": "yes"}}', "expected true or false"),
    (b'{"v": 1, "cmd": "unban", "args": {"ips": "1.2.3.4"}}', "expected a list of strings"),
    # what json.loads refuses or Python accepts and JSON does not
    (b"[" * 100_000, "malformed request: nested too deeply"),
    (b'{"v": 1, "cmd": "ping", "args": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
     "malformed request: nested too deeply"),
    (b'{"v": 1, "cmd": "ping", "n": ' + b"7" * 5000 + b"}",
     "not JSON (Exceeds the limit (4300 digits) for integer string conversion"),
    (b'{"v": NaN, "cmd": "ping"}', "malformed request: not JSON (NaN is not JSON)"),
    (b'{"v": 1, "cmd": "ping", "x": Infinity}', "not JSON (Infinity is not JSON)"),
    (b'{"v": 1, "cmd": "ping", "args": {"x": [-Infinity]}}', "not JSON (-Infinity is not JSON)"),
    (b'{"v": 1, "cmd": "status", "args": {"jail": "a\xc3("}}', "not JSON ('utf-8' codec"),
    # strings that are JSON but no argument: over MAX_WORD, or not text
    (json.dumps({"v": 1, "cmd": "set", "args": {"jail": "sshd", "param": "maxretry",
                                                  "value": "1" * 5000}}).encode(),
     "bad argument 'value' for 'set': too long (5000 characters; at most 4096)"),
    (json.dumps({"v": 1, "cmd": "ban", "args": {"jail": "sshd",
                                                  "ips": ["192.0.2.1", "9" * 5000]}}).encode(),
     "bad argument 'ips' for 'ban': an entry too long (5000 characters; at most 4096)"),
    (b'{"v": 1, "cmd": "status", "args": {"jail": "\\ud800"}}',
     "bad argument 'jail' for 'status': not valid text (an unpaired surrogate)"),
    (b'{"v": 1, "cmd": "ban", "args": {"jail": "a", "ips": ["\\udfff"]}}',
     "bad argument 'ips' for 'ban': an entry not valid text"),
])
def test_bad_requests_are_refused_with_one_line(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(line)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("line", [
    json.dumps({"v": 1, "cmd": "x" * 10_000_000}).encode(),
    json.dumps({"v": "v" * 10_000_000, "cmd": "ping"}).encode(),
    json.dumps({"v": 1, "cmd": "ping", "args": {"k" * 10_000_000: 1}}).encode(),
    b'{"v": ' + b"[" * 900 + b"]" * 900 + b', "cmd": "ping"}',
    b'{"v": 1' + b"0" * 4000 + b', "cmd": "ping"}',
])
def test_refusals_quote_a_bounded_part_of_what_was_sent(line: bytes) -> None:
    """An error echoes the client's value cut short: never megabytes, never a deep repr."""
    with pytest.raises(ProtocolError) as info:
        parse_request(line)
    assert len(str(info.value)) < 400 and "..." in str(info.value)


def test_string_arguments_up_to_the_limit_and_any_text_are_accepted() -> None:
    value = "1" * MAX_WORD
    line = Request("set", {"jail": "jäil ☃", "param": "p", "value": value}).encode()
    assert parse_request(line).args == {"jail": "jäil ☃", "param": "p", "value": value}
    assert parse_request(b'{"v": 1, "cmd": "ping", "x": 1e999}') == Request("ping", {})


def test_the_client_refuses_malformed_answers_the_same_way() -> None:
    for garbage in (b"[" * 100_000, b'{"ok": true, "result": NaN}', b"\xff"):
        with pytest.raises(ProtocolError, match=r"^malformed response from the daemon"):
            parse_response(garbage)


def test_encoding_is_one_line_per_message() -> None:
    nasty = 'a\nb\r\u2028"}'
    line = Request("get", {"jail": nasty, "param": "x"}).encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_request(line).args["jail"] == nasty
    assert encode_error("two\nlines  here") == b'{"ok":false,"error":"two lines here"}\n'
    assert parse_response(encode_result({"x": [1, None]})) == {"x": [1, None]}
    with pytest.raises(ValueError):
        encode_result(float("nan"))  # not JSON: the server turns this into an error answer


def test_responses() -> None:
    with pytest.raises(CommandError, match=r"^no such jail: 'x'$"):
        parse_response(b'{"ok": false, "error": "no such jail: \'x\'"}\n')
    for garbage in (b"pong\n", b"[]\n", b'{"result": 1}\n'):
        with pytest.raises(ProtocolError):
            parse_response(garbage)
    assert CommandError.exit_code == 2 and DaemonUnavailable.exit_code == 1
    assert MAX_REQUEST >= 64 * 1024 * 1024 and VERSION == 1


def test_socket_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANISH_SOCKET", raising=False)
    assert socket_path(None) == "/run/banish/banish.sock"
    monkeypatch.setenv("BANISH_SOCKET", "/tmp/env.sock")
    assert socket_path(None) == "/tmp/env.sock"
    assert socket_path("/tmp/flag.sock") == "/tmp/flag.sock"


def test_split_and_merge() -> None:
    ips = [f"10.0.{i // 256}.{i % 256}" for i in range(CHUNK * 2 + 5)]
    parts = list(split(Request("ban", {"jail": "j", "ips": ["-"]}), ips))
    assert [len(p.args["ips"]) for p in parts] == [CHUNK, CHUNK, 5]
    assert [ip for p in parts for ip in p.args["ips"]] == ips
    assert all(p.args["jail"] == "j" for p in parts)
    assert all(len(p.encode()) < MAX_REQUEST for p in parts)
    assert merge_results("ban", [{"banned": 2, "already": 1}, {"banned": 3, "already": 0}]) == \
        {"banned": 5, "already": 1}
    assert merge_results("unban", [{"unbanned": 1, "not_banned": ["a"]},
                                   {"unbanned": 2, "not_banned": ["b"]}]) == \
        {"unbanned": 3, "not_banned": ["a", "b"]}
    with pytest.raises(ValueError):
        merge_results("status", [{}, {}])


def test_runtime_accepts_exactly_the_protocol_arguments() -> None:
    """The daemon's handler and the table must agree on every command's argument names."""
    from banish.daemon import runtime  # an import failure is a failure, not a skip

    for cmd in COMMANDS:
        method = getattr(runtime.Runtime, f"cmd_{cmd.name}")
        params = set(inspect.signature(method).parameters) - {"self"}
        assert params == {f.name for f in cmd.fields}, cmd.name


# -- human output --------------------------------------------------------------------------

@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_render_status_overview() -> None:
    result = {"jails": ["nginx", "sshd"], "jail_count": 2, "summary": [
        {"jail": "nginx", "currently_failed": 0, "total_failed": 4, "currently_banned": 1,
         "total_banned": 2},
        {"jail": "sshd", "currently_failed": 3, "total_failed": 120, "currently_banned": 2,
         "total_banned": 45}]}
    text = client.render(Request("status", {"jail": None}), result, 0)
    assert text.splitlines() == [
        "Status",
        "|- Number of jail:\t2",
        "`- Jail list:\tnginx, sshd",
        "",
        "JAIL   FAILED  TOTAL FAILED  BANNED  TOTAL BANNED",
        "nginx       0             4       1             2",
        "sshd        3           120       2            45",
    ]


def test_render_jail_status_tree() -> None:
    result = {"jail": "sshd", "currently_failed": 1, "total_failed": 9, "currently_banned": 2,
              "total_banned": 5, "banned": ["192.0.2.1", "192.0.2.2"],
              "files": ["/var/log/auth.log"],
              "file_errors": [{"path": "/var/log/gone.log", "message": "missing"}],
              "backend": "polling"}
    text = client.render(Request("status", {"jail": "sshd"}), result, 0)
    assert text.splitlines() == [
        "Status for the jail: sshd",
        "|- Filter",
        "|  |- Currently failed:\t1",
        "|  |- Total failed:\t9",
        "|  |- File list:\t/var/log/auth.log",
        "|  |- File errors:\t/var/log/gone.log: missing",
        "|  `- Backend:\tpolling",
        "`- Actions",
        "   |- Currently banned:\t2",
        "   |- Total banned:\t5",
        "   `- Banned IP list:\t192.0.2.1 192.0.2.2",
    ]


@pytest.mark.usefixtures("utc")
def test_render_banned_table_in_local_time() -> None:
    now = 1_700_000_000.0
    rows = [{"jail": "sshd", "ip": "192.0.2.1", "banned_at": now - 60, "expires_at": now + 3720,
             "bantime": 3780},
            {"jail": "recidive", "ip": "2001:db8::/64", "banned_at": now, "expires_at": None,
             "bantime": -1}]
    text = client.render(Request("banned", {"ip": None, "jail": None}), rows, now)
    assert text.splitlines() == [
        "JAIL      ADDRESS        BANNED AT                  EXPIRES AT                      LEFT",
        "sshd      192.0.2.1      2023-11-14T22:12:20+00:00  2023-11-14T23:15:20+00:00      1h02m",
        "recidive  2001:db8::/64  2023-11-14T22:13:20+00:00  never                      permanent",
    ]
    assert client.render(Request("banned", {"ip": "192.0.2.9", "jail": None}), [], now) == \
        "192.0.2.9 is not banned"


@pytest.mark.usefixtures("utc")
def test_render_get_banip_as_fail2ban_client() -> None:
    """fail2ban's BanManager.getBanList(withTime=True): '%s \\t%s + %d = %s', ordered by the
    end of the ban, a permanent one ending at 9999-12-31 23:59:59."""
    now = 1_700_000_000.0
    rows = [{"jail": "sshd", "ip": "192.0.2.9", "banned_at": now, "expires_at": None,
             "bantime": -1},
            {"jail": "sshd", "ip": "192.0.2.1", "banned_at": now - 60.7, "expires_at": now + 540,
             "bantime": 600},
            {"jail": "sshd", "ip": "2001:db8::/64", "banned_at": now, "expires_at": now + 300,
             "bantime": 300}]
    plain = client.render(Request("banned", {"ip": None, "jail": "sshd"}, "addresses"), rows, now)
    assert plain == "2001:db8::/64 192.0.2.1 192.0.2.9"
    timed = client.render(Request("banned", {"ip": None, "jail": "sshd"}, "with-time"), rows, now)
    assert timed.splitlines() == [
        "2001:db8::/64 \t2023-11-14 22:13:20 + 300 = 2023-11-14 22:18:20",
        "192.0.2.1 \t2023-11-14 22:12:19 + 600 = 2023-11-14 22:22:20",
        "192.0.2.9 \t2023-11-14 22:13:20 + -1 = 9999-12-31 23:59:59",
    ]
    views: tuple[View, ...] = ("addresses", "with-time")
    for view in views:  # fail2ban prints an empty line; banish nothing
        assert client.render(Request("banned", {"ip": None, "jail": "sshd"}, view), [], now) == ""


def test_render_simple_results() -> None:
    assert client.render(Request("ban", {"jail": "sshd", "ips": []}),
                         {"banned": 3, "already": 1}, 0) == "banned 3 in sshd, 1 already banned"
    assert client.render(Request("unban", {}), {"unbanned": 1, "not_banned": ["a", "b"]}, 0) == \
        "unbanned 1; not banned: a b"
    assert client.render(Request("get", {}), {"jail": "j", "param": "logpath",
                                              "value": ["/a", "/b"]}, 0) == "/a\n/b"
    assert client.render(Request("reload", {}), {"jails": ["a", "b"]}, 0) == \
        "reloaded; jails: a, b"
    assert client.render(Request("ping", {}), "pong", 0) == "pong"
    assert client.render(Request("get", {"jail": None, "param": "loglevel"}),
                         {"jail": None, "param": "loglevel", "value": "DEBUG"}, 0) == "DEBUG"
    assert client.render(Request("get", {}), {"jail": "j", "param": "findtime",
                                              "value": 600}, 0) == "600"
    assert client.render(Request("get", {}), {"jail": "j", "param": "datepattern",
                                              "value": None}, 0) == ""
    assert json.loads(client.render(Request("get", {}), {"value": {"k": 1}}, 0)) == {"k": 1}


def _reference_is_address(text: str) -> bool:
    import ipaddress

    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@given(st.text(alphabet="0123456789abcdef:./%x \x00", max_size=24))
def test_fast_address_check_agrees_with_ipaddress(text: str) -> None:
    assert is_address(text) == _reference_is_address(text)


def test_reload_carries_the_callers_ssh_session_and_i_know(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A friends-only service must not cut off the session `banish reload` is typed in."""
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.4 50022 10.0.0.2 22")
    request = translate("reload", "--i-know")
    assert request.args["session"] == "198.51.100.4 50022 10.0.0.2 22"
    assert request.args["i_know"] is True
