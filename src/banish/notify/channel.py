"""The contract between an action's sender and its channel (mail, webhook, apprise, ...).

Owns `Channel` (what a channel does: send a few items, or a digest of many, and say how many
items one ordinary send takes), `DeliveryError` (a failed send, retried with back-off; its
text goes to the log and ``status``, so it must never hold a secret), the helpers every channel
shares for data that came from logs (`one_line`, `tilde_safe`), and reading a secret file at
send time. Must not queue, retry or pace: `notify.sender` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from .notice import Notice


class DeliveryError(Exception):
    """A send failed (receiver down, refused, timed out, answered an error)."""


class Channel(Protocol):
    batch: int
    """Items one ordinary send takes: 1 (a mail per ban) or more (a webhook batch, a file)."""

    async def send(self, items: Sequence[Notice], digest: bool, key: str) -> None:
        """Deliver ``items``; ``digest``: they were held back and go out as one summary.
        ``key`` names the send uniquely and stays the same when it is retried (an idempotency
        key for receivers that want one). Raises DeliveryError."""
        ...


def one_line(text: str) -> str:
    """``text`` safe for a header or a one-line field: CR, LF and other control characters
    become spaces (a header's end can never come from data)."""
    return "".join(c if c >= " " and c != "\x7f" else " " for c in text)


def tilde_safe(text: str) -> str:
    """No line of ``text`` starts with ``~`` (mailx's escape: CVE-2021-32749) or is a lone
    ``.``: such lines get a leading space, whatever tool the text is handed to later."""
    lines = text.split("\n")
    return "\n".join(" " + ln if ln.startswith("~") or ln == "." else ln for ln in lines)


def read_secret(path: str) -> str:
    """The first line of a secret file (read at each send: rotation needs no reload). The
    error names the file, never its content."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip("\r\n")
    except OSError as exc:
        raise DeliveryError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DeliveryError(f"cannot read {path}: not UTF-8 text") from None


def check_secret_file(path: str) -> str | None:
    """A warning when a secret file can be read by others (said once, at start)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"secret file {path}: {exc.strerror}"
    if mode & 0o004:
        return f"secret file {path} is readable by every user; chmod 600 it"
    return None
