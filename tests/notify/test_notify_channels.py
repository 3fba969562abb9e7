"""Each native action against a real receiver on loopback: webhook (HMAC checked here), mail
through aiosmtpd with STARTTLS (per event and digest), apprise's json://, jsonlog across a
logrotate rename, and banish-exec with hostile values that must never run."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from banish.config.notify import NotifyAction, compile_notify
from banish.daemon.stream import EventStream
from banish.events import Ban, BanEvent, EventKind
from banish.notify.channel import DeliveryError
from banish.notify.notice import Notice, notices
from banish.notify.subscriber import Notifications, make_channel
from banish.store.sqlite import SqliteStore
from tests.notify.receivers import HttpReceiver, SmtpReceiver

HOSTILE = ["$(touch {c})", "`touch {c}`", "; touch {c}", "a\ntouch {c}\n", "x\r\nBcc: evil@x",
           "~! touch {c}", "' \" ; touch {c}", "<ip>"]


def notice_list(*bans: Ban, kind: EventKind = EventKind.BAN) -> list[Notice]:
    action = compile_notify("banish-jsonlog", {"path": "/x"}, "sshd")
    return notices(BanEvent(kind, time.time(), bans), frozenset({b.jail for b in bans}),
                   action.context)


def hostile_ban(ip: str, canary: Path) -> Ban:
    values = [h.format(c=canary) for h in HOSTILE]
    return Ban(ip, "sshd", time.time(), 600, failures=3, matches=tuple(values),
               fields={"user": values[0]})


def wait(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


# -- webhook ---------------------------------------------------------------------------------

def test_webhook_posts_json_with_a_valid_hmac_and_data_stays_data(tmp_path: Path) -> None:
    receiver = HttpReceiver()
    secret = tmp_path / "hook.key"
    secret.write_text("s3cret-key\n")
    try:
        action = compile_notify("banish-webhook", {
            "url": receiver.url, "secretfile": str(secret),
            "headers": "X-Jail: <jail> | X-User: <F-USER> | X-Match: <matches>"}, "sshd")
        channel = make_channel(action)
        canary = tmp_path / "CANARY"
        items = notice_list(hostile_ban("192.0.2.7", canary))
        asyncio.run(channel.send(items, False, "banish-webhook:1:0"))
        (headers, body), = receiver.requests
        mac = hmac.new(b"s3cret-key", body, hashlib.sha256).hexdigest()
        assert headers["X-Banish-Signature"] == f"sha256={mac}"
        assert headers["X-Banish-Delivery"] == "banish-webhook:1:0"
        assert headers["X-Jail"] == "sshd"
        # A CR/LF in a value cannot start a header of its own.
        assert "Bcc" not in headers and "\n" not in headers["X-Match"]
        doc = json.loads(body)
        assert doc["ip"] == "192.0.2.7" and doc["matches"] == [
            h.format(c=canary) for h in HOSTILE]
        assert not canary.exists()
        # A wrong key does not verify: the test really checks the signature.
        assert not hmac.compare_digest(
            hmac.new(b"other", body, hashlib.sha256).hexdigest(), mac)
        receiver.set_mode("refuse")
        with pytest.raises(DeliveryError, match="HTTP 503"):
            asyncio.run(channel.send(items, False, "k"))
    finally:
        receiver.close()


def test_webhook_batches_and_times_out_on_a_hanging_receiver() -> None:
    receiver = HttpReceiver()
    try:
        action = compile_notify("banish-webhook", {"url": receiver.url, "batch": "yes",
                                                   "batchsize": "3", "timeout": "0.5"}, "sshd")
        channel = make_channel(action)
        assert channel.batch == 3
        items = notice_list(*(Ban(f"192.0.2.{i}", "sshd", time.time(), 60) for i in range(3)))
        asyncio.run(channel.send(items, False, "k"))
        assert [e["ip"] for e in receiver.events()] == ["192.0.2.0", "192.0.2.1", "192.0.2.2"]
        receiver.set_mode("hang")
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer within 0\.5 s"):
            asyncio.run(channel.send(items, False, "k"))
        assert time.monotonic() - started < 3
    finally:
        receiver.close()


# -- mail ------------------------------------------------------------------------------------

def test_mail_per_event_and_digest_over_starttls(tmp_path: Path) -> None:
    smtp = SmtpReceiver(tmp_path, starttls=True)
    try:
        auth = tmp_path / "auth"
        auth.write_text("user:pw\n")
        action = compile_notify("banish-mail", {
            "to": "root@example.org, sec@example.org", "host": "127.0.0.1",
            "port": str(smtp.port), "tls": "starttls", "cafile": str(smtp.cert),
            "subject": "[banish] <ip> <F-USER>"}, "sshd")
        channel = make_channel(action)
        canary = tmp_path / "CANARY"
        one = notice_list(hostile_ban("192.0.2.9", canary))
        asyncio.run(channel.send(one, False, "banish-mail:1:0"))
        many = notice_list(*(Ban(f"198.51.100.{i}", "sshd", time.time(), 60, matches=(
            "~! id", f"fail {i}")) for i in range(50)))
        asyncio.run(channel.send(many, True, "banish-mail:2:0"))
        (tls1, rcpt, msg), (tls2, _, digest) = smtp.received()
        assert tls1 and tls2, "both mails went over STARTTLS"
        assert rcpt == ["root@example.org", "sec@example.org"]
        subject = str(msg["Subject"])
        assert subject.startswith("[banish] 192.0.2.9 $(touch")
        assert "\n" not in subject and msg["Bcc"] is None
        body = msg.get_content()
        assert not any(line.startswith("~") for line in body.splitlines())
        assert " ~! touch" in body  # the line is there, as text, one space in
        assert "50 events" in str(digest["Subject"])
        text = digest.get_content()
        assert all(f"198.51.100.{i} " in text for i in range(50))
        assert not any(line.startswith("~") for line in text.splitlines())
        assert not canary.exists()
    finally:
        smtp.close()


def test_mail_over_implicit_tls_with_auth_from_a_file(tmp_path: Path) -> None:
    smtp = SmtpReceiver(tmp_path, implicit=True)
    auth = tmp_path / "auth"
    auth.write_text("user\npass word\n")
    try:
        action = compile_notify("banish-mail", {
            "to": "root@example.org", "host": "127.0.0.1", "port": str(smtp.port),
            "tls": "ssl", "cafile": str(smtp.cert), "authfile": str(auth)}, "sshd")
        with pytest.raises(DeliveryError) as info:  # aiosmtpd here offers no AUTH
            asyncio.run(make_channel(action).send(
                notice_list(Ban("192.0.2.5", "sshd", time.time(), 60)), False, "k"))
        assert "pass word" not in str(info.value)
        action = compile_notify("banish-mail", {
            "to": "root@example.org", "host": "127.0.0.1", "port": str(smtp.port),
            "tls": "ssl", "cafile": str(smtp.cert)}, "sshd")
        asyncio.run(make_channel(action).send(
            notice_list(Ban("192.0.2.5", "sshd", time.time(), 60)), False, "k"))
        ((_, rcpt, msg),) = smtp.received()
        assert rcpt == ["root@example.org"] and "192.0.2.5" in str(msg["Subject"])
    finally:
        smtp.close()


def test_mail_refuses_an_unverified_certificate(tmp_path: Path) -> None:
    smtp = SmtpReceiver(tmp_path, starttls=True)
    try:
        action = compile_notify("banish-mail", {"to": "a@example.org", "host": "127.0.0.1",
                                                "port": str(smtp.port), "tls": "starttls"},
                                "sshd")
        with pytest.raises(DeliveryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            asyncio.run(make_channel(action).send(
                notice_list(Ban("192.0.2.1", "sshd", time.time(), 60)), False, "k"))
        assert smtp.received() == []
    finally:
        smtp.close()


# -- apprise ---------------------------------------------------------------------------------

# apprise's plugins import imghdr, deprecated in Python 3.11 (a warning outside pytest's "error").
@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
def test_apprise_json_scheme_to_a_loopback_endpoint() -> None:
    receiver = HttpReceiver()
    try:
        action = compile_notify("banish-apprise", {
            "urls": f"json://127.0.0.1:{receiver.port}/hook"}, "sshd")
        asyncio.run(make_channel(action).send(
            notice_list(Ban("192.0.2.44", "sshd", time.time(), 60, matches=("bad <ip>",))),
            False, "k"))
        (doc,) = receiver.documents()
        assert "192.0.2.44" in doc["title"] and "bad <ip>" in doc["message"]
    finally:
        receiver.close()


# -- jsonlog through the stream and the outbox ---------------------------------------------

def run_actions(tmp_path: Path, actions: list[NotifyAction],
                body: Callable[[EventStream], Any]) -> None:
    async def main() -> None:
        with SqliteStore(tmp_path / "db.sqlite3") as store:
            stream = EventStream()
            notify = Notifications(store)
            await notify.configure(stream, actions)
            try:
                await body(stream)
            finally:
                await stream.close()
                await notify.stop()
    asyncio.run(main())


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_jsonlog_follows_a_rename_rotation(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    action = compile_notify("banish-jsonlog", {"path": str(path), "on": "ban,unban"}, "sshd")

    def lines(p: Path) -> list[dict[str, Any]]:
        return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []

    async def body(stream: EventStream) -> None:
        stream.publish(BanEvent(EventKind.BAN, time.time(), (
            Ban("192.0.2.1", "sshd", time.time(), 60, matches=("two\nlines",)),
            Ban("192.0.2.2", "other", time.time(), 60))))
        await until(lambda: len(lines(path)) == 1)
        os.rename(path, tmp_path / "bans.json.1")  # logrotate without copytruncate
        stream.publish(BanEvent(EventKind.UNBAN, time.time(),
                                (Ban("192.0.2.1", "sshd", time.time(), 60),), reason="manual"))
        await until(lambda: len(lines(path)) == 1)

    run_actions(tmp_path, [action], body)
    (old,) = lines(tmp_path / "bans.json.1")
    (new,) = lines(path)
    assert (old["event"], old["ip"], old["matches"]) == ("ban", "192.0.2.1", ["two\nlines"])
    assert (new["event"], new["reason"]) == ("unban", "manual")
    assert oct(path.stat().st_mode & 0o777) == "0o640"


# -- exec ------------------------------------------------------------------------------------

RECORDER = """import json, os, sys
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps({"argv": sys.argv[2:], "ip": os.environ.get("BANISH_IP"),
                         "user": os.environ.get("BANISH_F_USER"),
                         "stdin": sys.stdin.read()}) + "\\n")
"""


def test_exec_hostile_values_never_run(tmp_path: Path) -> None:
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    out = tmp_path / "out.jsonl"
    canary = tmp_path / "CANARY"
    cmd = f"{sys.executable} {recorder} {out} <ip> --user=<F-USER> <matches>"
    action = compile_notify("banish-exec", {"cmd": cmd, "env": "yes", "rate": "off"}, "sshd")
    bans = [hostile_ban(f"192.0.2.{i}", canary) for i in range(1, 4)]

    async def body(stream: EventStream) -> None:
        stream.publish(BanEvent(EventKind.BAN, time.time(), tuple(bans)))
        await until(lambda: out.exists() and len(out.read_text().splitlines()) == 3)

    run_actions(tmp_path, [action], body)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    values = [h.format(c=canary) for h in HOSTILE]
    for ban, rec in zip(bans, records, strict=True):
        assert rec["argv"] == [ban.address, f"--user={values[0]}", "\n".join(values)]
        assert rec["ip"] == ban.address and rec["user"] == values[0]
        assert json.loads(rec["stdin"])["matches"] == values
        assert not any(line.startswith("~") for line in rec["stdin"].splitlines())
    assert not canary.exists()
    assert not (Path.cwd() / "CANARY").exists()
