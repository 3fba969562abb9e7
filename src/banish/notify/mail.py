"""``banish-mail[to=...]``: SMTP mail per event or as a digest; plain, STARTTLS or TLS.

Owns the message (subject and body from the admin's templates with tags; a digest lists the
bans, at most ``maxlines`` of them, then a count of the rest), and talking SMTP with Python's
``smtplib`` in a worker thread (``tls=none|starttls|ssl``, certificates verified against the
system's CAs or ``cafile`` unless ``verify=no``; AUTH with ``user:password`` or
``user\\npassword`` read from ``authfile`` at each send).

Safety, since matched lines and DNS names are written by attackers: banish speaks SMTP itself,
no ``mail``/``mailx`` reads the body, and still no body line starts with ``~`` (mailx's escape,
CVE-2021-32749) or is a lone ``.``; a header value (the subject) can never carry CR/LF -- the
template is checked at load time and a tag's control characters become spaces, and Python's
SMTP policy would refuse any that remained. The password is never in a log line or ``status``.
Must not pace or retry.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from .channel import DeliveryError, one_line, read_secret, tilde_safe
from .notice import HOSTNAME, Notice, digest_tags, render

SUBJECT = "[banish] <event> <ip> in <jail> on <hostname>"
DIGEST_SUBJECT = "[banish] <count> events (<jail>) on <hostname>"
BODY = """banish on <hostname>: <event> of <ip> in jail <jail>.

Time:       <time>
Ban time:   <bantime> s (ban number <bancount> of this address)
Failures:   <failures>
Origin:     <origin>

Matched lines:
<matches>
"""


class Mail:
    batch = 1

    def __init__(self, options: Mapping[str, str], timeout: float) -> None:
        self.to = options["to"].split(",")
        self.sender = options["from"]
        self.host = options["host"]
        self.port = int(options["port"])
        self.tls = options["tls"]
        self.authfile = options.get("authfile")
        self.subject = options.get("subject") or SUBJECT
        self.digest_subject = options.get("digestsubject") or DIGEST_SUBJECT
        self.body_template = (options.get("body") or BODY).replace("\\n", "\n")
        self.maxlines = int(options.get("maxlines", "1000"))
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=options.get("cafile") or None)
        if options.get("verify") == "no":
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE

    def message(self, items: Sequence[Notice], digest: bool, key: str) -> EmailMessage:
        msg = EmailMessage(policy=SMTP)
        if digest:
            subject = render(self.digest_subject, digest_tags(items))
            body = self._digest_body(items)
        else:
            tags = items[0].tags()
            subject = render(self.subject, tags)
            body = render(self.body_template, tags)
        msg["Subject"] = one_line(subject)[:900]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(idstring=key.replace(":", "."), domain=HOSTNAME)
        msg.set_content(tilde_safe(body))
        return msg

    def _digest_body(self, items: Sequence[Notice]) -> str:
        jails: dict[str, int] = {}
        for n in items:
            jails[n.jail] = jails.get(n.jail, 0) + 1
        lines = [f"banish on {HOSTNAME}: {len(items)} events, held back (rate limit, digest "
                 "or quiet hours) and sent together.", "",
                 "Per jail: " + ", ".join(f"{j} {c}" for j, c in sorted(jails.items())), ""]
        for n in items[:self.maxlines]:
            first = one_line(n.matches[-1])[:200] if n.matches else ""
            lines.append(f"{n.kind:7} {n.address:39} {n.jail} bantime={n.bantime} "
                         f"failures={n.failures} #{n.ban_count} {first}".rstrip())
        if len(items) > self.maxlines:
            lines.append(f"... and {len(items) - self.maxlines} more")
        return "\n".join(lines) + "\n"

    async def send(self, items: Sequence[Notice], digest: bool, key: str) -> None:
        msg = self.message(items, digest, key)
        await asyncio.to_thread(self._deliver, msg)

    def _deliver(self, msg: EmailMessage) -> None:
        where = f"{self.host}:{self.port}"
        try:
            smtp: smtplib.SMTP
            if self.tls == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=self._ssl)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.tls == "starttls":
                    smtp.starttls(context=self._ssl)
                if self.authfile:
                    user, password = self._credentials()
                    smtp.login(user, password)
                refused = smtp.send_message(msg, self.sender, self.to)
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"{where}: {_smtp_reason(exc)}") from None
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"{where}: {exc}") from None
        if refused:
            raise DeliveryError(f"{where} refused {', '.join(sorted(refused))}")

    def _credentials(self) -> tuple[str, str]:
        assert self.authfile is not None
        text = read_secret(self.authfile)
        user, sep, password = text.partition("\n") if "\n" in text else text.partition(":")
        if not sep or not user:
            raise DeliveryError(f"{self.authfile}: expected user:password or two lines")
        return user.strip(), password.strip("\r\n")


def _smtp_reason(exc: smtplib.SMTPException) -> str:
    """One line; an SMTP error may echo what was sent, but AUTH failures only echo codes."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"SMTP {exc.smtp_code} {one_line(text)[:200]}"
    return one_line(str(exc))[:200]
