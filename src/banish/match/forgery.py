"""Lines the client forged: where the server wrote the client's address, and where a copy sits.

A server writes the client's address into a line at one place, inside a piece of text of a
fixed shape, followed by text of a fixed shape up to the end of the line (sshd: ``from
<address> port 4242 ssh2``, and ``: <information>`` only after the methods that record some;
nginx's error log: ``, client: <address>, server: ..., request: "...", host: "..."`` and maybe a
Referer; Dovecot's auth process: ``,<address>,<session>): <message>``). The client writes its
own text into the same line (a user name, a Referer), unescaped, and can copy that piece with an
innocent address in it. A filter whose regex reads the copy bans the innocent address: fail2ban's
own sshd, dovecot and nginx-http-auth filters do, for a user name with a space and ``: `` in it,
an auth user name with ``,`` and ``)`` in it (only when Dovecot's ``auth_username_chars`` is
emptied), and a Referer that imitates a whole second ``client:`` tail.

So, for a line a failregex matched, every place where the server's piece *and the server's text
after it* could stand is a candidate. One candidate: the filter must have read that address, or
the line is not read (as if an ignoreregex had matched). Two: the line has two readings and
nothing in it says which is the server's, so it is not read at all. None: the line is not one
whose layout is known here, and the filter's reading stands.

The check goes with the server (the filter's name), not with a filter file: it holds for
fail2ban's filters, banish's own and an admin's copy under the same name, in every mode, and
costs a few string operations (a search or two when the piece's text occurs twice) on a line a
failregex has already matched. The price, paid deliberately: where a line has two readings
(e.g. a failed public key whose certificate ID copies sshd's end), it is not counted for
either. fail2ban's own annotated samples hold one line where fail2ban reads the copy
(tests/compat/KNOWN_GAPS.md says which and why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..addr import canonical_address
from .tags import IPV4

# An address as these servers write it: dotted IPv4 or colon-hex IPv6 (maybe IPv4-mapped).
_ADDRESS = rf"(?:{IPV4}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*)"


@dataclass(frozen=True, slots=True)
class ServerLayout:
    """Where one server writes the client: ``piece`` (with an ``addr`` group) and ``tail``,
    the server's own text from the end of the piece to the end of the line."""

    piece: re.Pattern[str]
    tail: re.Pattern[str]
    literal: str
    """Text every piece holds: a line holding it once has at most one candidate."""
    probes: tuple[tuple[str, str], ...] = ()
    """The piece as the server writes it around an address (before, after): a line holding
    ``literal`` once and a probe around the address read is settled at once."""
    only: re.Pattern[str] | None = None
    """Lines without this are not the server's lines the layout describes."""
    open_tail: re.Pattern[str] | None = None
    """A looser ``tail`` for lines where text the client can fill may follow the address:
    always those ``open_when`` finds, else when no place ends in ``tail``."""
    open_when: re.Pattern[str] | None = None

    def forged(self, line: str, address: str | None) -> bool:
        """Whether ``line`` must not be read when the filter read ``address`` from it."""
        if address is not None and line.count(self.literal) < 2:
            # At most one place holds the piece: when it holds the address read, that is all
            # (the common case, in a few string operations).
            for before, after in self.probes:
                if before + address + after in line:
                    return False
        candidates = self._candidates(line)
        if not candidates or (len(candidates) == 1 and (address is None
                                                        or _same(candidates[0], address))):
            return False
        return self._applies(line)

    def _tails(self, line: str) -> tuple[re.Pattern[str], ...]:
        if self.open_tail is None:
            return (self.tail,)
        if self.open_when is not None and self.open_when.search(line) is not None:
            return (self.open_tail,)
        return (self.tail, self.open_tail)

    def _candidates(self, line: str) -> list[str]:
        pieces = list(self.piece.finditer(line))
        if not pieces:
            return []
        for tail in self._tails(line):
            found = [m.group("addr") for m in pieces if tail.match(line, m.end())]
            if found:
                return found
        return []

    def _applies(self, line: str) -> bool:
        return self.only is None or self.only.search(line) is not None


def _same(written: str, read: str) -> bool:
    if written == read:
        return True
    left, right = canonical_address(written.strip("[]")), canonical_address(read.strip("[]"))
    if left is None or right is None:
        return written.lower() == read.lower()
    return left == right


_SSHD = ServerLayout(
    # OpenSSH ends an authentication message with "from <address> port <n> ssh2". Only the
    # methods that record information (publickey: the key or certificate, whose ID the client
    # writes; hostbased: the client's user and host; gssapi-with-mic: the principal) add
    # ": <information>" after it; "password", "none" and "keyboard-interactive" add nothing.
    piece=re.compile(r" from (?P<addr>\S+) port \d+ ssh\d"),
    tail=re.compile(r"(?: \[preauth\])?\s*$"),
    literal=" port ",
    probes=((" from ", " port "),),
    open_tail=re.compile(r"(?:: .*)?(?: \[preauth\])?\s*$"),
    open_when=re.compile(r"\b(?:Failed|Accepted|Postponed|Partial) "
                         r"(?:publickey|hostbased|gssapi-with-mic) for "),
)
_DOVECOT = ServerLayout(
    # The auth process: "passwd-file(<user>,<address>[,<session>]): <message>". The user name
    # comes before the address; the message after it is the server's and holds no "," or "<".
    piece=re.compile(rf",(?P<addr>{_ADDRESS})(?:,<[^>\s]*>)?\): "),
    tail=re.compile(r"[^,<>]*$"),
    literal="): ",
    probes=((",", "): "), (",", ",<")),
)
_NGINX = ServerLayout(
    # "..., client: <address>, server: <name>, request: "<line>"[, upstream: ...], host:
    # "<host>"[, referrer: "<anything>"]". nginx refuses a Host header with "/" in it.
    piece=re.compile(r", client: (?P<addr>[^,\s]+)"),
    tail=re.compile(r', server: [^,]*, request: "[^"]*"(?:, (?:upstream|subrequest): "[^"]*")*'
                    r'(?:, host: "[^"/]*")?(?:, referrer: ".*")?\s*$'),
    literal=", client: ",
    probes=((", client: ", ", server: "),),
    only=re.compile(r"\[(?:debug|info|notice|warn|error|crit|alert|emerg)\] \d+#\d+: "),
)


def layout_for(filter_name: str) -> ServerLayout | None:
    """The layout of the server whose log ``filter_name`` reads, or None (none known).

    Every ``nginx-*`` filter reads nginx's error log (some also its access log, which the
    layout's ``only`` leaves alone). A filter copied under a name of its own (``my-sshd``) gets
    no layout: name it after the server to keep the check.
    """
    if filter_name == "sshd":
        return _SSHD
    if filter_name == "dovecot":
        return _DOVECOT
    if filter_name.startswith("nginx-"):
        return _NGINX
    return None
