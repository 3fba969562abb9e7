"""The hostile-input corpus: every historic log-injection shape, as a table.

A log line is written partly by the server and partly by whoever is on the other end: a user
name, an SSH version string, a reverse-DNS name (from a PTR record the client's owner controls),
an e-mail address, a URL, an SMTP HELO name, HTTP headers. Each row puts an innocent address into
such client-written text of a line whose real client is the attacker, and says what may be
banned: the attacker (the address, or the host name the server wrote), or nothing. Banning the
innocent address -- or anything else -- is a failure (`test_corpus.py`).

Rows run against banish's own filters (``banish/<name>``, the packaged filter.d) and against
fail2ban's (``fail2ban/<name>``, the installed Debian package's /etc/fail2ban/filter.d, read at
test time, never copied here), under every mode the filter has. A row that a filter cannot get
right because the log format itself is ambiguous carries a ``gaps`` key, listed with its reason
in tests/compat/KNOWN_GAPS.md ("Hostile input"); the test expects it to fail, strictly, so the
list stays true.

Templates: ``{a}`` the attacker's address, ``{i}`` the innocent one, ``{i_}`` the innocent one
with dashes for dots (``203-0-113-9``, a common PTR style). Rows marked ``v6`` run with IPv6
addresses as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ATTACKER4 = "198.51.100.1"
INNOCENT4 = "203.0.113.9"
ATTACKER6 = "2001:db8:1::1"
INNOCENT6 = "2001:db8:9::9"

SHAPES = {
    "ip-in-user": "an address as (or inside) the user name",
    "log-text-in-user": "a user name imitating the rest of the server's message",
    "ssh-version": "SSH protocol banner, version string or algorithm offer written by the client",
    "reverse-dns": "a reverse-DNS (PTR) name made of the innocent address",
    "email": "an e-mail address at the innocent address",
    "url": "a URL naming the innocent address (request path, file name)",
    "helo": "an SMTP HELO/EHLO name",
    "http-header": "HTTP Referer / User-Agent text",
    "host-header": "the HTTP Host header",
    "xff": "X-Forwarded-For-like text in headers",
}

# Every mode of each filter the corpus runs under ("" = the filter's default, no option).
MODES: dict[str, tuple[str, ...]] = {
    "banish/sshd": ("normal", "ddos", "extra", "aggressive"),
    "banish/postfix": ("normal", "auth", "rbl", "aggressive"),
    "banish/dovecot": ("normal", "aggressive"),
    "banish/nginx-http-auth": ("",),
    "banish/nginx-botsearch": ("",),
    "banish/apache-auth": ("normal", "aggressive"),
    "banish/mysqld-auth": ("",),
    "banish/recidive": ("",),
    "fail2ban/sshd": ("normal", "ddos", "extra", "aggressive"),
    "fail2ban/postfix": ("more", "normal", "auth", "rbl", "ddos", "extra", "aggressive",
                         "errors"),
    "fail2ban/dovecot": ("normal", "aggressive"),
    "fail2ban/nginx-http-auth": ("normal", "aggressive"),
    "fail2ban/apache-auth": ("normal", "aggressive"),
}


@dataclass(frozen=True)
class Case:
    """One hostile line (or short sequence of lines of one connection) for one filter."""

    shape: str
    filter: str
    template: str
    attacker: str | None = "{a}"
    """What may be banned (formatted like the template); None: nothing may."""
    v6: bool = False
    gap: str | None = None
    """The KNOWN_GAPS.md key of a case the filter cannot get right (expected to fail)."""


@dataclass(frozen=True)
class Variant:
    """A case with its addresses filled in."""

    case: Case
    number: int
    family: str
    lines: tuple[str, ...]
    attacker: str | None
    innocent: str

    @property
    def id(self) -> str:
        return f"{self.case.filter}:{self.case.shape}:{self.number}:{self.family}"


@dataclass
class _Table:
    cases: list[Case] = field(default_factory=list)

    def add(self, filters: str, shape: str, *templates: str, attacker: str | None = "{a}",
            v6: bool = False, gaps: dict[str, str] | None = None) -> None:
        assert shape in SHAPES, shape
        for flt in filters.split():
            assert flt in MODES, flt
            for template in templates:
                gap = (gaps or {}).get(flt)
                self.cases.append(Case(shape, flt, template, attacker, v6, gap))


_T = _Table()
add = _T.add

SSHD_BOTH = "banish/sshd fail2ban/sshd"
POSTFIX_BOTH = "banish/postfix fail2ban/postfix"
DOVECOT_BOTH = "banish/dovecot fail2ban/dovecot"
NGINX_AUTH_BOTH = "banish/nginx-http-auth fail2ban/nginx-http-auth"
APACHE_BOTH = "banish/apache-auth fail2ban/apache-auth"

# -- sshd -----------------------------------------------------------------------------------
S = "Aug 14 11:59:59 srv sshd[4242]: "
add(SSHD_BOTH, "ip-in-user",
    S + "Invalid user {i} from {a} port 4242",
    S + "Failed password for invalid user {i} from {a} port 4242 ssh2",
    S + "Failed none for invalid user {i} from {a} port 4242 ssh2",
    S + "Failed publickey for invalid user {i} from {a} port 4242 ssh2: RSA SHA256:abc",
    S + "error: maximum authentication attempts exceeded for invalid user {i} from {a} port "
        "4242 ssh2 [preauth]",
    S + "Connection closed by invalid user {i} {a} port 4242 [preauth]",
    S + "Disconnected from invalid user {i} {a} port 4242 [preauth]",
    S + "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost={a}  user={i}",
    v6=True)
add(SSHD_BOTH, "log-text-in-user",
    S + "Failed password for invalid user root from {i} port 22 ssh2 from {a} port 4242 ssh2",
    S + "Failed password for invalid user x from {i} from {a} port 4242 ssh2",
    S + "Invalid user x from {i} port 22 from {a} port 4242",
    S + "Invalid user x from {i} from {a} port 4242",
    S + "error: maximum authentication attempts exceeded for invalid user x from {i} port 22 "
        "ssh2 [preauth] from {a} port 4242 ssh2 [preauth]",
    S + "Connection closed by invalid user x {i} port 22 {a} port 4242 [preauth]",
    S + "Disconnected from invalid user x {i} port 22 [preauth] {a} port 4242 [preauth]",
    S + "error: PAM: Authentication failure for illegal user x from {i} from {a}",
    v6=True)
# A name with a space and ": " in it: fail2ban's regex takes "x" for the name and accepts any
# text after "ssh2: " (where it expects key information).
add(SSHD_BOTH, "log-text-in-user",
    S + "Failed password for invalid user x from {i} port 22 ssh2: RSA y from {a} port 4242 "
        "ssh2",
    S + "Failed publickey for invalid user x from {i} port 22 ssh2: RSA y from {a} port 4242 "
        "ssh2: RSA SHA256:abc",
    v6=True)
add(SSHD_BOTH, "ssh-version",
    S + "Bad protocol version identification 'SSH-2.0-x from {i} port 22' from {a} port 4242",
    S + "Bad protocol version identification '{i}' from {a} port 4242",
    S + "Bad protocol version identification 'x' from {i}' from {a} port 4242",
    S + "kex_exchange_identification: client sent invalid protocol identifier "
        "\"SSH-2.0-{i}\"\n" + S + "Connection closed by {a} port 4242 [preauth]",
    S + "Unable to negotiate with {a} port 4242: no matching host key type found. "
        "Their offer: ssh-rsa,{i} [preauth]",
    S + "Received disconnect from {a} port 4242:3: x from {i}: Auth fail [preauth]",
    S + "Received disconnect from {a} port 4242:11: Bye from {i} port 22 [preauth]",
    v6=True)
add(SSHD_BOTH, "reverse-dns",
    S + "Failed password for root from {i}.evil.example port 4242 ssh2",
    S + "Failed password for invalid user admin from {i}.evil.example port 4242 ssh2",
    S + "Failed password for invalid user a b from {i}.evil.example port 4242 ssh2",
    S + "Invalid user admin from {i}.evil.example port 4242",
    S + "ROOT LOGIN REFUSED FROM {i}.evil.example port 4242",
    S + "User root from {i}.evil.example not allowed because not listed in AllowUsers",
    S + "Connection closed by {i}.evil.example port 4242 [preauth]",
    S + "Connection closed by authenticating user root {i}.evil.example port 4242 [preauth]",
    S + "Did not receive identification string from {i}.evil.example port 4242",
    S + "Received disconnect from {i}.evil.example port 4242:11: Bye Bye [preauth]",
    S + "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost={i}.evil.example  user=root\n"
    + S + "Failed password for root from {i}.evil.example port 4242 ssh2",
    attacker="{i}.evil.example")
add(SSHD_BOTH, "reverse-dns",
    S + "Failed password for root from {i_}.evil.example port 4242 ssh2",
    S + "Invalid user admin from {i_}.evil.example port 4242",
    attacker="{i_}.evil.example")
add(SSHD_BOTH, "reverse-dns",
    S + "Failed password for root from {i}-x.evil.example port 4242 ssh2",
    attacker="{i}-x.evil.example")
add(SSHD_BOTH, "reverse-dns",
    S + "Failed password for root from {i}x.evil.example port 4242 ssh2",
    attacker="{i}x.evil.example")
add(SSHD_BOTH, "email",
    S + "Invalid user admin@{i} from {a} port 4242",
    S + "Failed password for invalid user admin@{i} from {a} port 4242 ssh2",
    S + "Connection closed by invalid user admin@{i} {a} port 4242 [preauth]",
    v6=True)
add(SSHD_BOTH, "url",
    S + "Invalid user http://{i}/ from {a} port 4242",
    S + "Bad protocol version identification 'GET http://{i}/ HTTP/1.1' from {a} port 4242",
    S + "Bad protocol version identification 'CONNECT {i}:443 HTTP/1.1' from {a} port 4242",
    v6=True)

# -- postfix --------------------------------------------------------------------------------
P = "Aug 14 11:59:59 mx postfix/smtpd[4242]: "
add(POSTFIX_BOTH, "reverse-dns",
    P + "NOQUEUE: reject: RCPT from {i}.evil.example[{a}]: 554 5.7.1 <x@example.org>: Relay "
        "access denied; from=<y@example.com> to=<x@example.org> proto=ESMTP "
        "helo=<{i}.evil.example>",
    P + "NOQUEUE: reject: RCPT from {i_}.evil.example[{a}]: 550 5.1.1 <x@example.org>: "
        "Recipient address rejected: User unknown in local recipient table; "
        "from=<y@example.com> to=<x@example.org> proto=ESMTP helo=<{i_}.evil.example>",
    P + "warning: {i}.evil.example[{a}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
    P + "warning: hostname {i}.evil.example does not resolve to address {a}: Name or service "
        "not known",
    P + "lost connection after AUTH from {i}.evil.example[{a}]")
add(POSTFIX_BOTH, "helo",
    P + "NOQUEUE: reject: RCPT from unknown[{a}]: 450 4.7.1 <[{i}]>: Helo command rejected: "
        "Host not found; from=<x@example.com> to=<y@example.org> proto=ESMTP helo=<[{i}]>",
    P + "NOQUEUE: reject: RCPT from unknown[{a}]: 504 5.5.2 <{i}>: Helo command rejected: need "
        "fully-qualified hostname; from=<x@example.com> to=<y@example.org> proto=SMTP "
        "helo=<{i}>",
    P + "NOQUEUE: reject: RCPT from unknown[{a}]: 450 4.7.1 <x>: Helo command rejected: Host "
        "not found; from=<x@example.com> to=<y@example.org> proto=ESMTP helo=<x [{i}]: x>",
    P + "improper command pipelining after HELO from unknown[{a}]: HELO [{i}]\\r\\n",
    P + "improper command pipelining after EHLO from unknown[{a}]: from unknown[{i}]: x",
    v6=True)
add(POSTFIX_BOTH, "email",
    P + "NOQUEUE: reject: RCPT from unknown[{a}]: 554 5.7.1 <admin@[{i}]>: Relay access "
        "denied; from=<admin@[{i}]> to=<admin@[{i}]> proto=ESMTP helo=<x>",
    P + "NOQUEUE: reject: MAIL from unknown[{a}]: 553 5.7.1 <admin@{i}>: Sender address "
        "rejected: not logged in; from=<admin@{i}> proto=ESMTP helo=<x>",
    P + "NOQUEUE: reject: RCPT from unknown[{a}]: 550 5.1.1 <x@example.org>: Recipient address "
        "rejected: User unknown; from=<from unknown[{i}]: 554 5.7.1@x> to=<x@example.org> "
        "proto=ESMTP helo=<x>",
    v6=True)
add(POSTFIX_BOTH, "url",
    P + "warning: non-SMTP command from unknown[{a}]: GET http://{i}/ HTTP/1.1",
    P + "warning: non-SMTP command from unknown[{a}]: CONNECT [{i}]:25 HTTP/1.0",
    v6=True)

# -- dovecot --------------------------------------------------------------------------------
D = "Aug 14 11:59:59 mx dovecot: "
DL = D + "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): "
add(DOVECOT_BOTH, "ip-in-user",
    DL + "user=<{i}>, method=PLAIN, rip={a}, lip=192.0.2.10, TLS, session=<abc>",
    D + "auth: passwd-file({i},{a},<abc>): unknown user",
    D + "auth: passwd-file({i},{a}): Password mismatch",
    D + "auth: pam({i},{a},<abc>): pam_authenticate() failed: Authentication failure "
        "(Password mismatch?)",
    D + "auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 "
        "tty=dovecot ruser={i} rhost={a}  user={i}",
    v6=True)
add(DOVECOT_BOTH, "log-text-in-user",
    DL + "user=<x>, method=PLAIN, rip={i}, lip=192.0.2.10, session=<y>, method=PLAIN, "
         "rip={a}, lip=192.0.2.10, mpid=0, TLS, session=<abc>",
    DL + "user=<x, rip={i}, lip=1>, method=PLAIN, rip={a}, lip=192.0.2.10, session=<abc>",
    DL + "user=<x>, rip={i}, lip=1, <>, method=PLAIN, rip={a}, lip=192.0.2.10, "
         "session=<abc>",
    v6=True)
# Only with auth_username_chars emptied (the default refuses ",", "(", ")" and spaces).
add(DOVECOT_BOTH, "log-text-in-user",
    D + "auth: passwd-file(x,{i},<y>): unknown user,{a},<abc>): unknown user",
    D + "auth: passwd-file(x,{i}): Password mismatch x,{a}): Password mismatch",
    v6=True)
add(DOVECOT_BOTH, "email",
    DL + "user=<admin@{i}>, method=PLAIN, rip={a}, lip=192.0.2.10, TLS, session=<abc>",
    D + "auth: passwd-file(admin@{i},{a},<abc>): unknown user",
    D + "auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 "
        "tty=dovecot ruser=admin@{i} rhost={a}  user=admin@{i}",
    v6=True)

# -- nginx-http-auth ------------------------------------------------------------------------
N = "2005/08/14 11:59:59 [error] 4242#4242: *1 "
NT = ', client: {a}, server: example.org, request: "GET /private/ HTTP/1.1", host: "example.org"'
add(NGINX_AUTH_BOTH, "ip-in-user",
    N + 'user "{i}" was not found in "/etc/nginx/.htpasswd"' + NT,
    N + 'user "{i}": password mismatch' + NT,
    v6=True)
add(NGINX_AUTH_BOTH, "log-text-in-user",
    N + 'user "x" was not found in "/f", client: {i}, server: example.org, request: '
        '"GET / HTTP/1.1", host: "example.org"" was not found in "/etc/nginx/.htpasswd"' + NT,
    N + 'user "x": password mismatch, client: {i}, server: s": password mismatch' + NT,
    N + 'user "x, client: {i}": password mismatch' + NT,
    v6=True)
add(NGINX_AUTH_BOTH, "email",
    N + 'user "admin@{i}": password mismatch' + NT,
    v6=True)
add(NGINX_AUTH_BOTH, "url",
    N + 'user "admin": password mismatch, client: {a}, server: example.org, request: '
        '"GET http://{i}/private/ HTTP/1.1", host: "example.org"',
    N + 'user "admin": password mismatch, client: {a}, server: example.org, request: '
        '"GET /private/?next=http://{i}/,client:{i} HTTP/1.1", host: "example.org"',
    v6=True)
add(NGINX_AUTH_BOTH, "http-header",
    N + 'user "admin": password mismatch' + NT + ', referrer: "http://{i}/"',
    N + 'user "admin": password mismatch' + NT + ', referrer: "client: {i}"',
    v6=True)
# A Referer may hold spaces and quotes, and nginx writes it unescaped at the end of the line:
# it can imitate a whole second "client: ..." tail.
add(NGINX_AUTH_BOTH, "http-header",
    N + 'user "admin" was not found in "/etc/nginx/.htpasswd"' + NT + ', referrer: "x" was not '
        'found in "/f", client: {i}, server: example.org, request: "GET / HTTP/1.1", '
        'host: "example.org"',
    v6=True)
add(NGINX_AUTH_BOTH, "host-header",
    N + 'user "admin": password mismatch, client: {a}, server: example.org, request: '
        '"GET /private/ HTTP/1.1", host: "{i}"',
    N + 'user "admin": password mismatch, client: {a}, server: example.org, request: '
        '"GET /private/ HTTP/1.1", host: "{i}.evil.example"',
    N + 'user "admin": password mismatch, client: {a}, server: example.org, request: '
        '"GET /private/ HTTP/1.1", host: "x, client: {i}"',
    v6=True)
add(NGINX_AUTH_BOTH, "xff",
    N + 'user "admin": password mismatch' + NT + ', referrer: "X-Forwarded-For:{i}"',
    N + 'user "X-Forwarded-For: {i}": password mismatch' + NT,
    v6=True)

# -- nginx-botsearch (banish only: fail2ban's is not in the list) --------------------
W = '{a} - - [14/Aug/2005:11:59:59 +0200] '
NB = "banish/nginx-botsearch"
add(NB, "ip-in-user",
    '{a} - {i} [14/Aug/2005:11:59:59 +0200] "GET /wp-login.php HTTP/1.1" 404 153 "-" "-"',
    v6=True)
add(NB, "url",
    W + '"GET /wp-login.php?redirect_to=http://{i}/ HTTP/1.1" 404 153 "-" "Mozilla/5.0"',
    W + '"GET /{i}/wp-login.php HTTP/1.1" 404 153 "-" "Mozilla/5.0"',
    N + 'open() "/var/www/html/{i}/wp-login.php" failed (2: No such file or directory), '
        'client: {a}, server: example.org, request: "GET /{i}/wp-login.php HTTP/1.1", '
        'host: "example.org"',
    N + 'open() "/var/www/html/x", client: {i}, server: example.org, request: "GET '
        '/wp-login.php HTTP/1.1", host: "example.org"/wp-login.php" failed (2: No such file or '
        'directory), client: {a}, server: example.org, request: "GET /x%22,%20client:%20{i}'
        '/wp-login.php HTTP/1.1", host: "example.org"',
    v6=True)
add(NB, "http-header",
    W + '"GET /wp-login.php HTTP/1.1" 404 153 "http://{i}/" "Mozilla/5.0 ({i})"',
    W + '"GET /wp-login.php HTTP/1.1" 404 153 "-" "{i} - - [14/Aug/2005:11:59:59 +0200] '
        '\\"GET /wp-login.php HTTP/1.1\\" 404 153"',
    N + '"/var/www/html/wp-login.php" is not found (2: No such file or directory), client: {a}, '
        'server: example.org, request: "GET /wp-login.php HTTP/1.1", host: "example.org", '
        'referrer: "x, client: {i}, server: y"',
    v6=True)
add(NB, "host-header",
    N + 'open() "/var/www/html/wp-login.php" failed (2: No such file or directory), client: '
        '{a}, server: example.org, request: "GET /wp-login.php HTTP/1.1", host: "{i}"',
    v6=True)
add(NB, "xff",
    W + '"GET /wp-login.php HTTP/1.1" 404 153 "-" "Mozilla/5.0" "{i}"',
    W + '"GET /wp-login.php HTTP/1.1" 404 153 "-" "X-Forwarded-For: {i}"',
    v6=True)

# -- apache-auth ----------------------------------------------------------------------------
A = "[Sun Aug 14 11:59:59.123456 2005] [auth_basic:error] [pid 4242:tid 4243] [client {a}:51234] "
add(APACHE_BOTH, "ip-in-user",
    A + "AH01618: user {i} not found: /private/",
    A + "AH01617: user {i}: authentication failure for \"/private/\": Password Mismatch",
    v6=True)
add(APACHE_BOTH, "log-text-in-user",
    A + "AH01618: user [client {i}:1] not found: /private/",
    A + "AH01618: user x not found: /private/ [client {i}:1] AH01618: user y not found: /private/",
    v6=True)
add(APACHE_BOTH, "email",
    A + "AH01618: user admin@{i} not found: /private/",
    v6=True)
add(APACHE_BOTH, "url",
    A + "AH01618: user admin not found: /http://{i}/private/",
    A + "AH01617: user admin: authentication failure for \"/[client {i}:1]\": Password Mismatch",
    v6=True)
add(APACHE_BOTH, "http-header",
    A + "AH01618: user admin not found: /private/, referer: http://{i}/",
    A + "AH01618: user admin not found: /private/, referer: [client {i}:1]",
    v6=True)
add(APACHE_BOTH, "xff",
    A + "AH01618: user admin not found: /private/, referer: X-Forwarded-For: {i}",
    v6=True)
add(APACHE_BOTH, "reverse-dns",
    "[Sun Aug 14 11:59:59.123456 2005] [auth_basic:error] [pid 4242:tid 4243] "
    "[client {i}.evil.example:51234] AH01618: user admin not found: /private/",
    attacker="{i}.evil.example")

# -- mysqld-auth ----------------------------------------------------------------------------
M = "2005-08-14T09:59:59.123456Z 8 [Note] [MY-010926] [Server] Access denied for user "
MA = "banish/mysqld-auth"
add(MA, "ip-in-user",
    M + "'{i}'@'{a}' (using password: YES)",
    v6=True)
add(MA, "log-text-in-user",
    M + "'x'@'{i}' (using password: YES)'@'{a}' (using password: YES)",
    M + "'x'@'{i}'@'{a}' (using password: NO)",
    v6=True)
add(MA, "email",
    M + "'admin@{i}'@'{a}' (using password: YES)",
    v6=True)
add(MA, "reverse-dns",
    M + "'root'@'{i}.evil.example' (using password: YES)",
    attacker="{i}.evil.example")
add(MA, "reverse-dns",
    M + "'root'@'{i_}.evil.example' (using password: YES)",
    attacker="{i_}.evil.example")

# -- recidive: banish's log holds client-derived text only as host names it failed to resolve;
# a Ban line is only ever banish's (or fail2ban's) own.
R = "2005-08-14 11:59:59,123 "
RC = "banish/recidive"
add(RC, "reverse-dns",
    R + "banish.jailrun [4242]: WARNING [sshd] cannot resolve {i}.evil.example",
    attacker=None)
add(RC, "log-text-in-user",
    "Aug 14 11:59:59 srv sshd[4242]: Invalid user x NOTICE  [sshd] Ban {i} from {a} port 4242",
    R + "banish.filter [4242]: INFO    [sshd] Found {a} - NOTICE  [sshd] Ban {i}",
    attacker=None, v6=True)

CASES: tuple[Case, ...] = tuple(_T.cases)


def _fill(text: str, attacker: str, innocent: str) -> str:
    return text.format(a=attacker, i=innocent, i_=innocent.replace(".", "-"))


def variants() -> list[Variant]:
    """Every case with IPv4 addresses, and with IPv6 ones where the row says ``v6``."""
    out = []
    for number, case in enumerate(CASES):
        families = [("v4", ATTACKER4, INNOCENT4)]
        if case.v6:
            families.append(("v6", ATTACKER6, INNOCENT6))
        for family, attacker, innocent in families:
            lines = tuple(_fill(case.template, attacker, innocent).split("\n"))
            allowed = None if case.attacker is None else _fill(case.attacker, attacker, innocent)
            out.append(Variant(case, number, family, lines, allowed, innocent))
    return out
