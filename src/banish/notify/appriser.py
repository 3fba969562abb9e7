"""``banish-apprise[urls="ntfy://... tgram://..."]``: any of apprise's notification services.

Owns handing a title and body (from templates with tags; a digest lists the bans) to the
``apprise`` package, which knows ntfy, Matrix, Slack, Telegram, Discord, e-mail and some
hundred others. apprise is an optional dependency (``pip install banish[apprise]``): it pulls
in requests, yaml and markdown, which nothing else in banish needs; the config loader refuses
``banish-apprise`` when it is missing. apprise is synchronous, so a send runs in a worker
thread, bounded by apprise's own network time-outs. Must not pace or retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .channel import DeliveryError, one_line, tilde_safe
from .notice import Notice, digest_tags, render

TITLE = "[banish] <event> <ip> in <jail> on <hostname>"
DIGEST_TITLE = "[banish] <count> events (<jail>) on <hostname>"
BODY = "<event> of <ip> in jail <jail> (<failures> failures, ban time <bantime> s)\n<matches>"
_DIGEST_LINES = 100


class Apprise:
    batch = 1

    def __init__(self, options: Mapping[str, str]) -> None:
        self.urls = options["urls"].split()
        self.title = options.get("title") or TITLE
        self.body = (options.get("body") or BODY).replace("\\n", "\n")

    def text(self, items: Sequence[Notice], digest: bool) -> tuple[str, str]:
        if not digest:
            tags = items[0].tags()
            return one_line(render(self.title, tags)), tilde_safe(render(self.body, tags))
        lines = [f"{n.kind} {n.address} {n.jail}" for n in items[:_DIGEST_LINES]]
        if len(items) > _DIGEST_LINES:
            lines.append(f"... and {len(items) - _DIGEST_LINES} more")
        title = render(DIGEST_TITLE if self.title == TITLE else self.title, digest_tags(items))
        return one_line(title), "\n".join(lines)

    async def send(self, items: Sequence[Notice], digest: bool, key: str) -> None:
        title, body = self.text(items, digest)
        await asyncio.to_thread(self._notify, title, body)

    def _notify(self, title: str, body: str) -> None:
        try:
            import apprise  # optional dependency, checked at config load
        except ImportError:
            raise DeliveryError("the apprise package is not installed") from None
        # apprise logs through "apprise" with URLs (tokens inside) at debug level only.
        logging.getLogger("apprise").setLevel(logging.WARNING)
        client: Any = apprise.Apprise()
        for url in self.urls:
            if not client.add(url):
                raise DeliveryError(f"apprise cannot use URL number {self.urls.index(url) + 1}")
        if not client.notify(title=title, body=body):
            raise DeliveryError("apprise: the notification was not accepted by every service")
