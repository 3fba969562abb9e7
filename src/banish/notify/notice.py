"""What one notification is about: a `Notice` (one ban of one event), its JSON, its tags.

Owns choosing the bans of a `BanEvent` one action tells about (`select`, through the
action's context; cheap, since it runs for every event of every action), the row form they
wait in inside the outbox (the `Ban` tuple itself, as JSON), the JSON document receivers
get (webhook, jsonlog, exec on stdin) and the tag values templates may use (``<ip>``,
``<jail>``, ``<matches>``...), and `render`: ONE substitution pass over a template written by
the admin, so a value from a log is never read as a template (a ``<ip>`` inside a matched line
stays text). Must not send anything or decide when.

Tag values are plain strings: each channel decides how they travel as data (a JSON string, one
argv element, a mail body where no line starts with ``~``, a header refused if it holds CR/LF).
"""

from __future__ import annotations

import datetime as dt
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..config.notify import NotifyContext
from ..events import Ban, BanEvent, EventKind
from .context import accepts, kind_of

HOSTNAME = socket.gethostname()


class Notice(NamedTuple):
    """One ban told about; ``kind`` is one of config.notify.EVENT_KINDS."""

    kind: str
    jail: str
    address: str
    banned_at: float
    bantime: int
    failures: int
    ban_count: int
    origin: str
    matches: tuple[str, ...]
    fields: Mapping[str, str]
    fid: str | None
    reason: str
    time: float
    """When the event happened (the ban's publication), not when the notice is sent."""

    @classmethod
    def from_ban(cls, kind: EventKind, reason: str, time: float, ban: Ban) -> Notice:
        return cls(kind_of(kind, ban), ban.jail, ban.address, ban.banned_at, ban.bantime,
                   ban.failures, ban.ban_count, ban.origin, tuple(ban.matches),
                   dict(ban.fields), ban.fid, reason, time)

    @classmethod
    def from_row(cls, kind: str, reason: str, time: float, row: list[Any]) -> Notice:
        """A notice from an outbox row: a `Ban` as JSON wrote it (fields in order)."""
        ban = Ban(str(row[0]), str(row[1]), float(row[2]), int(row[3]), int(row[4]),
                  tuple(map(str, row[5])), str(row[6]), int(row[7]),
                  {str(k): str(v) for k, v in dict(row[8]).items()},
                  None if row[9] is None else str(row[9]))
        return cls.from_ban(EventKind(kind), reason, time, ban)

    def document(self) -> dict[str, Any]:
        """The JSON object a receiver gets for this notice."""
        return {"event": self.kind, "jail": self.jail, "ip": self.address,
                "time": _iso(self.time), "banned_at": _iso(self.banned_at),
                "bantime": self.bantime, "permanent": self.bantime < 0,
                "failures": self.failures, "ban_count": self.ban_count,
                "origin": self.origin or None, "fid": self.fid, "reason": self.reason or None,
                "matches": list(self.matches), "fields": dict(self.fields), "host": HOSTNAME}

    def tags(self) -> dict[str, str]:
        """Tag name -> value for templates (fail2ban's names where it has one)."""
        tags = {"event": self.kind, "kind": self.kind, "ip": self.address, "jail": self.jail,
                "time": _iso(self.time), "banned_at": _iso(self.banned_at),
                "bantime": str(self.bantime), "failures": str(self.failures),
                "bancount": str(self.ban_count), "origin": self.origin,
                "fid": self.fid or self.address, "reason": self.reason,
                "matches": "\n".join(self.matches), "hostname": HOSTNAME,
                "fq-hostname": HOSTNAME, "count": "1"}
        for name, value in self.fields.items():
            tags[f"F-{name.upper()}"] = value
        return tags


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def select(event: BanEvent, jails: frozenset[str], context: NotifyContext) -> Sequence[Ban]:
    """The bans of ``event`` one action tells about (its jails, its context); the event's
    own tuple when all of them are (no copy of a 100,000-ban bulk)."""
    if event.kind is EventKind.RELOAD or not event.bans:
        return ()
    if event.kind is EventKind.BAN:
        if not context.kinds & {"ban", "fleet"}:
            return ()
    elif event.kind.value not in context.kinds:
        return ()
    bans = event.bans
    if all(b.jail in jails for b in bans) and _plain(context, event.kind):
        return bans
    return [b for b in bans if b.jail in jails and accepts(context, kind_of(event.kind, b), b)]


def _plain(context: NotifyContext, kind: EventKind) -> bool:
    """Whether the context accepts every ban of an event of ``kind`` in the action's jails."""
    return (not context.jails and not context.minbantime and context.repeat <= 1
            and (kind is not EventKind.BAN or {"ban", "fleet"} <= context.kinds))


def notices(event: BanEvent, jails: frozenset[str], context: NotifyContext) -> list[Notice]:
    """The notices of ``event`` one action tells about."""
    return [Notice.from_ban(event.kind, event.reason, event.time, b)
            for b in select(event, jails, context)]


_TAG = re.compile(r"<([A-Za-z][\w.\-]*)>")


def render(template: str, tags: Mapping[str, str]) -> str:
    """``template`` with each known ``<tag>`` replaced by its value, in one pass: a value is
    never scanned for tags again. Unknown tags stay as written."""
    return _TAG.sub(lambda m: tags.get(m.group(1), m.group(0)), template)


def digest_tags(items: Iterable[Notice]) -> dict[str, str]:
    """Tags of a digest: ``<count>``, ``<jail>`` (the jails, comma-separated), ``<ip>`` (the
    first address) ...; for subjects such as "[banish] <count> bans"."""
    items = list(items)
    jails = sorted({n.jail for n in items})
    first = items[0].tags() if items else {}
    return {**first, "count": str(len(items)), "jail": ",".join(jails),
            "event": "digest", "kind": "digest", "hostname": HOSTNAME}
