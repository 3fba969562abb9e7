"""What an action.d script's per-ban tags hold for one ban (fail2ban's ticket tags).

Owns the values of ``<ip>``, ``<time>``, ``<matches>``, ``<failures>``, ``<bantime>``,
``<bancount>``, ``<restored>``, ``<F-USER>`` ... computed as plain strings from the
``banish.events.Ban`` itself (the one shape of a ban), plus whether it is being restored.
Must not put any of them into script text: the action runner hands them to
``shell_command``, which passes them to the shell as data.
"""

from __future__ import annotations

from ..addr import parse_address
from ..config.actiondef import F_TAG
from ..events import PERMANENT, Ban

# fail2ban names two capture groups differently from their tags: <F-ID> is "fid", <F-PORT> "fport".
_FIELD_NAMES = {"id": "fid", "port": "fport"}

_EMPTY_TICKET = {"ip": "", "fid": "", "ip-rev": "", "matches": "", "ipmatches": "",
                 "ipjailmatches": "", "raw-ticket": "", "failures": "0", "bancount": "0",
                 "bantime": "0", "restored": "0", "ipfailures": "0", "ipjailfailures": "0"}


def family_of(address: str) -> str:
    """The ``[Init?family=...]`` a ban's canonical address text belongs to."""
    return "inet6" if ":" in address else "inet4"


def ticket_values(ban: Ban | None, *, restored: bool = False) -> dict[str, str]:
    """fail2ban's ticket tags for ``ban``; without one (start, stop...) an empty ticket's.

    ``restored`` marks a ban re-applied after a restart. banish keeps one list of matches
    per ban, so ``<ipmatches>``/``<ipjailmatches>`` (fail2ban: the address's matches in all
    jails / in this jail) and ``<ipfailures>``/``<ipjailfailures>`` show the ban's own.
    ``<time>`` is when the ban began; without a ban it is the caller's business (now).
    """
    if ban is None:
        return dict(_EMPTY_TICKET)
    ip = ban.address
    bantime = str(ban.bantime if ban.bantime >= 0 else PERMANENT)
    failures = str(ban.failures)
    matches = "\n".join(ban.matches)
    return {
        "ip": ip,
        "fid": ban.fid if ban.fid is not None else ip,
        "ip-rev": _reverse(ip),
        "time": str(float(ban.banned_at)),
        "failures": failures,
        "bancount": str(ban.ban_count),
        "bantime": bantime,
        "restored": "1" if restored else "0",
        "matches": matches,
        "ipmatches": matches,
        "ipjailmatches": matches,
        "ipfailures": failures,
        "ipjailfailures": failures,
        "raw-ticket": (f"ban ip={ip} jail={ban.jail} time={ban.banned_at} bantime={bantime} "
                       f"bancount={ban.ban_count} failures={ban.failures} "
                       f"matches={list(ban.matches)!r}"),
    }


def field_values(script: str, ban: Ban | None) -> dict[str, str]:
    """``<F-NAME>`` tags of ``script``: the failure's captures; "" for one it did not capture
    (and for every one when there is no ban)."""
    fields = ban.fields if ban is not None else {}
    out: dict[str, str] = {}
    for m in F_TAG.finditer(script):
        name = m.group(1).lower()
        out["F-" + m.group(1)] = str(fields.get(_FIELD_NAMES.get(name, name), ""))
    return out


def _reverse(address: str) -> str:
    """fail2ban's ``<ip-rev>``: the PTR labels without the arpa suffix (``4.3.2.1.``)."""
    host = None if "/" in address else parse_address(address)
    if host is None:
        return ""  # a network has no single PTR name
    labels = host.reverse_pointer.split(".")
    return ".".join(labels[:-2]) + "."
