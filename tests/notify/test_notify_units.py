"""Native notification actions, the pure and store parts: config, context, pacing, outbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from banish.config.firewall import compile_enforcement
from banish.config.notify import Delivery, NotifyContext, compile_notify
from banish.errors import ConfigError
from banish.events import PERMANENT, Ban, BanEvent, EventKind
from banish.notify.channel import one_line, tilde_safe
from banish.notify.context import quiet_until
from banish.notify.notice import Notice, notices, render, select
from banish.notify.pacing import NEVER, Pacer
from banish.notify.sender import _take
from banish.notify.subscriber import group
from banish.store.notify_outbox import NotifyOutbox, encode_chunks
from banish.store.sqlite import SqliteStore

T0 = 1_700_000_000.0


def ban(ip: str = "192.0.2.1", jail: str = "sshd", bantime: int = 600, **more: object) -> Ban:
    return Ban(ip, jail, T0, bantime, **more)  # type: ignore[arg-type]


# -- config ---------------------------------------------------------------------------------

def test_native_actions_compile_with_defaults_and_context() -> None:
    a = compile_notify("banish-mail", {"to": "root@example.org", "digest": "10m",
                                       "on": "ban,fleet", "repeat": "yes", "quiet": "22:00-07:00",
                                       "minbantime": "1h"}, "sshd")
    assert (a.kind, a.name, a.jail) == ("mail", "banish-mail", "sshd")
    assert a.options["tls"] == "none" and a.options["port"] == "25"  # localhost MTA
    assert a.delivery.digest == 600 and a.delivery.rate == (10, 60.0)
    assert a.context == NotifyContext(kinds=frozenset({"ban", "fleet"}), minbantime=3600,
                                      repeat=2, quiet=(22 * 60, 7 * 60))
    remote = compile_notify("banish-mail", {"to": "a@b.c", "host": "mx.example.org"}, "j")
    assert remote.options["tls"] == "starttls" and remote.options["port"] == "587"
    hook = compile_notify("banish-webhook", {"url": "https://h.example/x", "rate": "off",
                                             "headers": "X-Jail: <jail> | X-A: b"}, "j")
    assert hook.delivery.rate is None and hook.options["batch"] == "no"


@pytest.mark.parametrize(("name", "args", "message"), [
    ("banish-mail", {}, "needs to="),
    ("banish-mail", {"to": "root"}, "to: expected"),
    ("banish-mail", {"to": "a@b.c", "subject": "x\r\nBcc: evil@x"}, "one line"),
    ("banish-mail", {"to": "a@b.c", "tls": "startls"}, "tls:"),
    ("banish-mail", {"to": "a@b.c", "bogus": "1"}, "unknown option 'bogus'"),
    ("banish-webhook", {"url": "ftp://x"}, "url:"),
    ("banish-webhook", {"url": "http://x", "headers": "no colon"}, "headers:"),
    ("banish-webhook", {"url": "http://x", "rate": "ten"}, "rate:"),
    ("banish-jsonlog", {"path": "relative.json"}, "absolute"),
    ("banish-exec", {"cmd": "touch x"}, "absolute path"),
    ("banish-exec", {"cmd": "/bin/echo 'unclosed"}, "cmd:"),
    ("banish-exec", {"cmd": "/bin/true", "on": "bans"}, "unknown event kind"),
    ("banish-exec", {"cmd": "/bin/true", "quiet": "25:00-07:00"}, "quiet:"),
])
def test_bad_options_are_config_errors(name: str, args: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compile_notify(name, args, "sshd")


def test_enforcement_routes_native_actions_and_an_action_file_wins(tmp_path: Path) -> None:
    opts = {"action": "null\nbanish-jsonlog[path=/tmp/x.json]\nbanish-exec[cmd=/bin/true]"}
    e = compile_enforcement(str(tmp_path), "sshd", opts, "jail.conf")
    assert e.backend == "null" and [a.kind for a in e.notify] == ["jsonlog", "exec"]
    (tmp_path / "action.d").mkdir()
    (tmp_path / "action.d" / "banish-exec.conf").write_text(
        "[Definition]\nactionban = echo <ip>\n")
    e = compile_enforcement(str(tmp_path), "sshd", opts, "jail.conf")
    assert [a.kind for a in e.notify] == ["jsonlog"]
    assert [s.name for s in e.scripts] == ["banish-exec"]
    with pytest.raises(ConfigError, match="needs path") as info:
        compile_enforcement(str(tmp_path), "sshd", {"action": "banish-jsonlog"}, "jail.conf")
    assert info.value.where.option == "action" and info.value.where.section == "sshd"


def test_equal_actions_in_several_jails_are_one() -> None:
    a = compile_notify("banish-jsonlog", {"path": "/tmp/a"}, "sshd")
    b = compile_notify("banish-jsonlog", {"path": "/tmp/a"}, "web")
    c = compile_notify("banish-jsonlog", {"path": "/tmp/c"}, "mail")
    groups = group([a, b])
    assert list(groups) == ["banish-jsonlog"] and groups["banish-jsonlog"][1] == {"sshd", "web"}
    assert sorted(group([a, b, c])) == ["banish-jsonlog@mail", "banish-jsonlog@sshd"]


# -- context and notices ----------------------------------------------------------------------

def test_context_kinds_bantime_repeat_and_jails() -> None:
    ctx = NotifyContext(kinds=frozenset({"ban", "fleet", "unban"}), minbantime=3600, repeat=2,
                        jails=frozenset({"sshd", "web"}))
    event = BanEvent(EventKind.BAN, T0, (
        ban("192.0.2.1", bantime=600, ban_count=3),          # too short
        ban("192.0.2.2", bantime=7200, ban_count=1),         # first offence
        ban("192.0.2.3", bantime=7200, ban_count=2),         # told
        ban("192.0.2.4", bantime=PERMANENT, ban_count=2),    # permanent passes
        ban("192.0.2.5", bantime=7200, ban_count=2, origin="node-b"),  # a fleet ban
        ban("192.0.2.6", jail="mail", bantime=7200, ban_count=5),      # other jail
    ))
    got = notices(event, frozenset({"sshd", "mail"}), ctx)
    assert [(n.address, n.kind) for n in got] == [
        ("192.0.2.3", "ban"), ("192.0.2.4", "ban"), ("192.0.2.5", "fleet")]
    unban = BanEvent(EventKind.UNBAN, T0, (ban("192.0.2.7", bantime=7200),), reason="manual")
    assert [n.reason for n in notices(unban, frozenset({"sshd"}), ctx)] == ["manual"]
    assert notices(BanEvent(EventKind.EXPIRE, T0, (ban(bantime=7200),)),
                   frozenset({"sshd"}), ctx) == []


def test_quiet_hours_wrap_midnight() -> None:
    import time
    local = time.mktime((2026, 3, 10, 23, 30, 0, 0, 0, -1))
    ctx = NotifyContext(quiet=(22 * 60, 7 * 60))
    assert quiet_until(ctx, local) == time.mktime((2026, 3, 11, 7, 0, 0, 0, 0, -1))
    assert quiet_until(ctx, time.mktime((2026, 3, 10, 12, 0, 0, 0, 0, -1))) is None


def test_render_is_one_pass_and_values_are_data() -> None:
    tags = {"ip": "<jail>", "jail": "sshd"}
    assert render("<ip>/<jail>/<nope>", tags) == "<jail>/sshd/<nope>"
    assert one_line("a\r\nBcc: x\x00") == "a  Bcc: x "
    assert tilde_safe("ok\n~! id\n.\n~") == "ok\n ~! id\n .\n ~"


def test_notice_rows_round_trip_through_the_outbox_encoding() -> None:
    b = ban(matches=("l1", "l2"), fields={"user": "r"}, failures=3, fid="host.example")
    (count, text), = encode_chunks([b])
    n = Notice.from_row("ban", "", T0, json.loads(text)[0])
    assert n == Notice.from_ban(EventKind.BAN, "", T0, b)
    assert n.tags()["F-USER"] == "r" and n.document()["matches"] == ["l1", "l2"]
    assert n.fid == "host.example" and count == 1


def test_select_hands_back_the_event_itself_when_everything_passes() -> None:
    event = BanEvent(EventKind.BAN, T0, tuple(ban(f"10.0.0.{i}") for i in range(5)))
    assert select(event, frozenset({"sshd"}), NotifyContext(
        kinds=frozenset({"ban", "fleet"}))) is event.bans
    assert len(select(event, frozenset({"sshd"}), NotifyContext())) == 5


# -- pacing -----------------------------------------------------------------------------------

def test_rate_limit_then_one_digest_of_the_rest() -> None:
    p = Pacer(Delivery(rate=(3, 60.0)))
    sent = []
    now, pending = T0, 100
    while pending:
        step = p.plan(now, pending, T0)
        if step.what == "wait":
            now = step.until
            continue
        take = pending if step.what == "digest" else 1
        sent.append((now - T0, step.what, take))
        pending -= take
        p.sent(now, step)
    assert sent == [(0, "send", 1), (0, "send", 1), (0, "send", 1), (60, "digest", 97)]
    assert p.plan(now, 1, now).what == "send"  # calm again: one by one


def test_digest_mode_and_quiet_hours() -> None:
    p = Pacer(Delivery(digest=600))
    assert p.plan(T0, 5, T0) == ("wait", T0 + 600)
    assert p.plan(T0 + 600, 5, T0).what == "digest"
    q = Pacer(Delivery())
    assert q.plan(T0, 2, T0, quiet_end=T0 + 100) == ("wait", T0 + 100)
    assert q.plan(T0 + 100, 2, T0).what == "digest"
    assert q.plan(T0, 0, None) == ("wait", NEVER)


# -- the outbox -------------------------------------------------------------------------------

def test_outbox_survives_reopening_and_advances_exactly(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    event = ("ban", "", T0)
    with SqliteStore(db) as store:
        box = NotifyOutbox(store)
        box.add("hook", T0, event, encode_chunks([ban(f"10.0.{i // 250}.{i % 250}")
                                                  for i in range(2500)]))  # 1000, 1000, 500
        box.add("mail", T0 + 1, event, encode_chunks([ban()]))
        assert box.backlog("hook") == (2500, T0)
    with SqliteStore(db) as store:
        box = NotifyOutbox(store)
        rows = box.pending("hook", 1500)
        assert len(rows) == 2 and rows[0].kind == "ban"
        items, finished, partial = _take(rows, 1500)
        assert len(items) == 1500 and finished == [rows[0].seq] and partial == (rows[1].seq, 500)
        assert items[1499].address == "10.0.5.249"
        box.advance("hook", finished, partial)
        assert box.backlog("hook").items == 1000
        assert box.pending("hook", 1)[0].items[500][0] == "10.0.6.0"
        assert box.actions() == {"hook": 1000, "mail": 1}
        assert box.drop_older("mail", T0 + 2) == 1
        assert box.actions() == {"hook": 1000}
