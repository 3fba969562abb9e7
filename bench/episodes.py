"""Line kinds and the episodes that produce them, for bench/gen_logs.py.

Owns: what the synthetic logs say — OpenSSH, PAM, cron, sudo, systemd-logind, Postfix, Dovecot
and nginx messages modelled on the real programs' wording — and the KINDS table of which
fail2ban filter specs count each kind of line as a failure (fail2ban 1.0.2 semantics, checked by
running fail2ban-regex; see bench/README.md).

Must not: copy fail2ban's sample logs or regexes, or use real addresses: every address comes from
documentation, private, CGNAT or ULA ranges and is only ever written as text.

An episode is a function (Gen, t) that schedules one session's lines at t and later; Gen keeps
them on a heap so that sessions interleave as in real logs.
"""

from __future__ import annotations

import base64
import heapq
import ipaddress
import itertools
import random
from collections.abc import Callable

S, SA = "sshd", "sshd[mode=aggressive]"
P, PA = "postfix", "postfix[mode=aggressive]"
D, DA = "dovecot", "dovecot[mode=aggressive]"
NA, NB = "nginx-http-auth", "nginx-botsearch"

# kind -> filter specs expected to count the line as a failure (fail2ban 1.0.2 semantics).
# An empty tuple marks an attack line that the stock filters deliberately ignore or miss
# (NOFAIL context lines, probes outside the filter's list).  Benign lines have kind "-".
KINDS: dict[str, tuple[str, ...]] = {
    "ssh_invalid_user": (S, SA),
    "ssh_failed_password": (S, SA),
    "ssh_failed_password_invalid_user": (S, SA),
    "ssh_failed_none_invalid_user": (S, SA),
    "ssh_max_auth_attempts": (S, SA),
    "ssh_not_allowed_users": (S, SA),
    "ssh_pam_auth_failure": (),  # NOFAIL in the sshd filter: context for the Failed line
    "ssh_pam_check_pass": (),
    "ssh_pam_more_failures": (),
    "ssh_too_many_auth_failures": (),  # modern wording lacks the ": " the filter expects
    "ssh_no_identification": (SA,),
    "ssh_kex_identification": (SA,),
    "ssh_banner_invalid": (SA,),
    "ssh_unable_to_negotiate": (SA,),
    "ssh_closed_after_kex": (SA,),  # NOFAIL, but completes the pending address-less kex failure
    "ssh_closed_preauth": (SA,),
    "ssh_closed_user_preauth": (SA,),
    "ssh_bye_preauth": (),  # "Received disconnect ...:11:" is NOFAIL in every mode
    "pf_relay_denied": (P, PA),
    "pf_user_unknown": (P, PA),
    "pf_client_host_rejected": (P, PA),
    "pf_pipelining": (P, PA),
    "pf_sasl_failed": (PA,),
    "pf_lost_after_auth": (PA,),
    "pf_disconnect_auth_failed": (PA,),
    "pf_lost_after_ehlo": (PA,),
    "dv_pam_unix_failure": (D, DA),
    "dv_pam_authenticate_failed": (D, DA),
    "dv_unknown_user": (D, DA),
    "dv_login_auth_failed": (D, DA),
    "dv_no_auth_attempts": (DA,),
    "ng_user_not_found": (NA,),
    "ng_password_mismatch": (NA,),
    "ng_err_probe": (NB,),
    "acc_probe_listed": (NB,),
    "acc_probe_unlisted": (),  # .env, .git, xmlrpc.php ...: not in botsearch's list
    "acc_tls_garbage": (),
}

Item = tuple[float, int, str, str, str]  # (time, seq, kind, head, tail); line = head+ts+tail


def _v4(net: str, rng: random.Random) -> str:
    n = ipaddress.IPv4Network(net)
    return str(n[rng.randrange(1, n.num_addresses - 1)])


def _v6(net: str, rng: random.Random) -> str:
    n = ipaddress.IPv6Network(net)
    # half of them look hand-numbered (::1a2b), the rest SLAAC-like (64 random bits)
    low = rng.getrandbits(16) if rng.random() < 0.5 else rng.getrandbits(64)
    host = (rng.getrandbits(64) << 64 | low) & int(n.hostmask)
    return str(ipaddress.IPv6Address(int(n.network_address) | host))


def address_pools(seed: int) -> tuple[list[str], list[str]]:
    """Attackers (thousands, ~30 % IPv6) and legitimate clients; shared by all files."""
    rng = random.Random(f"{seed}:addresses")
    v4 = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/10", "172.16.0.0/12",
          "10.0.0.0/8")
    # dict.fromkeys, not a set: drops duplicates but keeps generation order, which (unlike a
    # set's order under hash randomisation) is the same in every process
    attackers = dict.fromkeys(
        _v6(rng.choice(("2001:db8::/32", "fd00::/8")), rng) if rng.random() < 0.3
        else _v4(rng.choices(v4, weights=(1, 1, 1, 4, 3, 4))[0], rng)
        for _ in range(6000))
    legit = dict.fromkeys([*(_v4("192.168.0.0/16", rng) for _ in range(60)),
                           *(_v6("2001:db8:1::/48", rng) for _ in range(15))])
    return list(attackers), list(legit)


class Gen:
    """Schedules episode lines on a heap and writes them in time order."""

    def __init__(self, name: str, seed: int, host: str) -> None:
        self.rng = random.Random(f"{seed}:{name}")
        self.attackers, self.legit = address_pools(seed)
        self.host = host
        self.heap: list[Item] = []
        self.seq = itertools.count()
        self._pid = self.rng.randrange(2000, 9000)
        self.session = 1
        self.conn = 1

    def add(self, t: float, kind: str, tail: str, head: str = "") -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, head, tail))

    def log(self, t: float, kind: str, ident: str, msg: str) -> None:
        """A syslog line: '<ts> host ident: msg'."""
        heapq.heappush(self.heap, (t, next(self.seq), kind, "", f" {self.host} {ident}: {msg}"))

    def pid(self) -> int:
        # small steps: a million lines never wrap pid_max, so no connection id is reused
        # (fail2ban and banish remember connections for different lengths of time)
        self._pid += self.rng.randrange(1, 12)
        if self._pid >= 4194304:  # pid_max on 64-bit Linux
            self._pid = 1000 + self._pid % 4194304
        return self._pid

    def attacker(self) -> str:
        # cube of a uniform variate: a few heavy hitters and a long tail of one-off addresses
        return self.attackers[int(len(self.attackers) * self.rng.random() ** 3)]

    def client(self) -> str:
        return self.rng.choice(self.legit)

    def port(self) -> int:
        return self.rng.randrange(1024, 65536)

    def token(self, nbytes: int) -> str:
        return base64.b64encode(self.rng.randbytes(nbytes)).decode().rstrip("=")

    def qid(self) -> str:
        return f"{self.rng.getrandbits(44):011X}"


# ---------------------------------------------------------------- auth.log (sshd, pam, cron)

USERS = (("alice", 1000), ("bob", 1001), ("deploy", 1002), ("backup", 1003), ("ci", 1004),
         ("ops", 1005))
SUDO_COMMANDS = ("/usr/bin/systemctl restart nginx", "/usr/bin/apt update",
                 "/usr/bin/journalctl -u postfix --since today", "/usr/bin/tail -f /var/log/syslog",
                 "/usr/sbin/nft list ruleset", "/usr/bin/docker ps", "/usr/bin/apt-get -y upgrade")
BAD_USERS = ("admin", "test", "user", "ubuntu", "oracle", "postgres", "git", "ftpuser", "guest",
             "pi", "support", "debian", "nagios", "hadoop", "minecraft", "steam", "tomcat", "www",
             "jenkins", "es", "elastic", "kafka", "dev", "server", "admin1", "user01", "test123",
             "sysadmin", "centos", "vagrant", "ansible", "zabbix", "mysql", "redis", "odoo")
KEX_OFFERS = ("diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1",
              "diffie-hellman-group1-sha1", "ssh-rsa,ssh-dss")
LOGIND = 598


def ep_ssh_session(g: Gen, t: float) -> None:
    r = g.rng
    user, uid = r.choice(USERS)
    addr, port, pid = g.client(), g.port(), g.pid()
    sid = g.session
    g.session += 1
    if r.random() < 0.85:
        how = f"publickey for {user} from {addr} port {port} ssh2: ED25519 SHA256:{g.token(32)}"
    else:
        how = f"password for {user} from {addr} port {port} ssh2"
    g.log(t, "-", f"sshd[{pid}]", f"Accepted {how}")
    g.log(t, "-", f"sshd[{pid}]", f"pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)")
    g.log(t + 0.01, "-", f"systemd-logind[{LOGIND}]", f"New session {sid} of user {user}.")
    if r.random() < 0.2:
        g.log(t + 0.02, "-", f"(systemd)[{pid + 3}]",
              f"pam_unix(systemd-user:session): session opened for user {user}(uid={uid}) by (uid=0)")
    dur = r.expovariate(1 / 900)
    for _ in range(int(r.expovariate(1.2))):
        at = t + r.random() * dur
        cmd = r.choice(SUDO_COMMANDS)
        g.log(at, "-", "sudo", f"  {user} : TTY=pts/{r.randrange(6)} ; PWD=/home/{user} ; USER=root ; COMMAND={cmd}")
        g.log(at, "-", "sudo", f"pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})")
        g.log(at + r.random() * 20, "-", "sudo", "pam_unix(sudo:session): session closed for user root")
    end, child = t + dur, pid + 5
    g.log(end, "-", f"sshd[{child}]", f"Received disconnect from {addr} port {port}:11: disconnected by user")
    g.log(end, "-", f"sshd[{child}]", f"Disconnected from user {user} {addr} port {port}")
    g.log(end, "-", f"sshd[{pid}]", f"pam_unix(sshd:session): session closed for user {user}")
    g.log(end + 0.01, "-", f"systemd-logind[{LOGIND}]", f"Session {sid} logged out. Waiting for processes to exit.")
    g.log(end + 0.02, "-", f"systemd-logind[{LOGIND}]", f"Removed session {sid}.")


def ep_cron(g: Gen, t: float) -> None:
    pid = g.pid()
    user, uid = ("root", 0) if g.rng.random() < 0.8 else g.rng.choice(USERS)
    g.log(t, "-", f"CRON[{pid}]", f"pam_unix(cron:session): session opened for user {user}(uid={uid}) by (uid=0)")
    g.log(t + g.rng.random() * 60, "-", f"CRON[{pid}]", f"pam_unix(cron:session): session closed for user {user}")


def ep_sudo_local(g: Gen, t: float) -> None:
    user, uid = g.rng.choice(USERS)
    g.log(t, "-", "sudo", f"  {user} : TTY=pts/{g.rng.randrange(6)} ; PWD=/home/{user} ; USER=root ; COMMAND={g.rng.choice(SUDO_COMMANDS)}")
    g.log(t, "-", "sudo", f"pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})")
    g.log(t + 2, "-", "sudo", "pam_unix(sudo:session): session closed for user root")


def ep_ssh_noise(g: Gen, t: float) -> None:
    """Scanners: kex/banner/disconnect noise that only the aggressive modes count."""
    r = g.rng
    addr, port, pid = g.attacker(), g.port(), g.pid()
    sp = f"sshd[{pid}]"
    k = r.randrange(7)
    if k == 0:
        g.log(t, "ssh_closed_preauth", sp, f"Connection closed by {addr} port {port} [preauth]")
    elif k == 1:
        g.log(t, "ssh_kex_identification", sp, "error: kex_exchange_identification: Connection closed by remote host")
        g.log(t, "ssh_closed_after_kex", sp, f"Connection closed by {addr} port {port}")
    elif k == 2:
        g.log(t, "ssh_kex_identification", sp, "error: kex_exchange_identification: read: Connection reset by peer")
        g.log(t, "ssh_closed_after_kex", sp, f"Connection reset by {addr} port {port}")
    elif k == 3:
        g.log(t, "ssh_unable_to_negotiate", sp,
              f"Unable to negotiate with {addr} port {port}: no matching key exchange method found. Their offer: {r.choice(KEX_OFFERS)} [preauth]")
    elif k == 4:
        g.log(t, "ssh_banner_invalid", sp, f"banner exchange: Connection from {addr} port {port}: invalid format")
    elif k == 5:
        g.log(t, "ssh_no_identification", sp, f"Did not receive identification string from {addr} port {port}")
    else:
        user = r.choice(("root", "git", "admin"))
        g.log(t, "ssh_bye_preauth", sp, f"Received disconnect from {addr} port {port}:11: Bye Bye [preauth]")
        g.log(t, "ssh_closed_user_preauth", sp, f"Disconnected from authenticating user {user} {addr} port {port} [preauth]")


def ep_ssh_brute(g: Gen, t: float) -> None:
    """A burst of password-guessing connections from one address, one user per connection."""
    r = g.rng
    addr = g.attacker()
    for _ in range(1 + int(r.expovariate(0.4))):
        pid, port = g.pid(), g.port()
        sp = f"sshd[{pid}]"
        rhost = f"logname= uid=0 euid=0 tty=ssh ruser= rhost={addr}"
        k = r.random()
        if k < 0.55:  # unknown user
            user = r.choice(BAD_USERS)
            g.log(t, "ssh_invalid_user", sp, f"Invalid user {user} from {addr} port {port}")
            if r.random() < 0.1:
                g.log(t + 0.2, "ssh_failed_none_invalid_user", sp, f"Failed none for invalid user {user} from {addr} port {port} ssh2")
            for i in range(1 + int(r.expovariate(1.5))):
                at = t + 0.5 + 2.5 * i
                g.log(at, "ssh_pam_check_pass", sp, "pam_unix(sshd:auth): check pass; user unknown")
                g.log(at, "ssh_pam_auth_failure", sp, f"pam_unix(sshd:auth): authentication failure; {rhost}")
                g.log(at + 2, "ssh_failed_password_invalid_user", sp, f"Failed password for invalid user {user} from {addr} port {port} ssh2")
            end = at + 2.3
            if r.random() < 0.5:
                g.log(end, "ssh_bye_preauth", sp, f"Received disconnect from {addr} port {port}:11: Bye Bye [preauth]")
                g.log(end, "ssh_closed_user_preauth", sp, f"Disconnected from invalid user {user} {addr} port {port} [preauth]")
            else:
                g.log(end, "ssh_closed_user_preauth", sp, f"Connection closed by invalid user {user} {addr} port {port} [preauth]")
        elif k < 0.62:  # a real account name that AllowUsers excludes
            user = r.choice(("mail", "www-data", "nobody", "daemon"))
            g.log(t, "ssh_not_allowed_users", sp, f"User {user} from {addr} not allowed because not listed in AllowUsers")
            g.log(t + 2, "ssh_failed_password_invalid_user", sp, f"Failed password for invalid user {user} from {addr} port {port} ssh2")
            end = t + 2.3
            g.log(end, "ssh_closed_user_preauth", sp, f"Connection closed by invalid user {user} {addr} port {port} [preauth]")
        else:  # existing account, usually root
            user = "root" if r.random() < 0.8 else r.choice(USERS)[0]
            tries = r.choice((1, 1, 2, 3, 6, 6))
            g.log(t + 0.5, "ssh_pam_auth_failure", sp, f"pam_unix(sshd:auth): authentication failure; {rhost}  user={user}")
            for i in range(tries):
                g.log(t + 2.5 + 2.5 * i, "ssh_failed_password", sp, f"Failed password for {user} from {addr} port {port} ssh2")
            end = t + 3 + 2.5 * tries
            if tries == 6:
                g.log(end, "ssh_max_auth_attempts", sp, f"error: maximum authentication attempts exceeded for {user} from {addr} port {port} ssh2 [preauth]")
                g.log(end, "ssh_too_many_auth_failures", sp, f"Disconnecting authenticating user {user} {addr} port {port}: Too many authentication failures [preauth]")
                g.log(end, "ssh_pam_more_failures", sp, f"PAM 5 more authentication failures; {rhost}  user={user}")
                g.log(end, "-", sp, "PAM service(sshd) ignoring max retries; 6 > 3")
            else:
                g.log(end, "ssh_closed_user_preauth", sp, f"Connection closed by authenticating user {user} {addr} port {port} [preauth]")
        t += 3 + r.expovariate(0.2) + (end - t)


# ---------------------------------------------------------------- mail.log (postfix, dovecot)

DOMAINS = ("example.org", "example.com", "example.net", "mailer.example", "news.example.org")
LOCAL = ("alice", "bob", "carol", "dave", "erin", "frank", "info", "sales", "support")
TLS = ("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
       "server-signature RSA-PSS (2048 bits) server-digest SHA256")
CLEANUP, QMGR = 1203, 1187


def ep_mail_in(g: Gen, t: float) -> None:
    r = g.rng
    addr = g.attackers[r.randrange(200, 1200)] if r.random() < 0.1 else g.client()
    name = f"mx{r.randrange(1, 20)}.{r.choice(DOMAINS)}"
    pid, q, rcpt = g.pid(), g.qid(), r.choice(LOCAL)
    sp = f"postfix/smtpd[{pid}]"
    g.log(t, "-", sp, f"connect from {name}[{addr}]")
    g.log(t + 0.1, "-", sp, f"Anonymous TLS connection established from {name}[{addr}]: {TLS}")
    g.log(t + 0.3, "-", sp, f"{q}: client={name}[{addr}]")
    g.log(t + 0.4, "-", f"postfix/cleanup[{CLEANUP}]", f"{q}: message-id=<{g.token(9)}@{name}>")
    g.log(t + 0.5, "-", f"postfix/qmgr[{QMGR}]", f"{q}: from=<{r.choice(LOCAL)}@{r.choice(DOMAINS)}>, size={r.randrange(900, 90000)}, nrcpt=1 (queue active)")
    g.log(t + 0.6, "-", sp, f"disconnect from {name}[{addr}] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7")
    sess = g.token(12)
    g.log(t + 0.7, "-", f"postfix/lmtp[{pid + 2}]", f"{q}: to=<{rcpt}@example.net>, relay=mail.example.net[private/dovecot-lmtp], delay=0.71, delays=0.5/0.01/0.02/0.18, dsn=2.0.0, status=sent (250 2.0.0 <{rcpt}@example.net> {sess} Saved)")
    g.log(t + 0.7, "-", "dovecot", f"lmtp({rcpt})<{pid + 3}><{sess}>: msgid=<{g.token(9)}@{name}>: saved mail to INBOX")
    g.log(t + 0.8, "-", f"postfix/qmgr[{QMGR}]", f"{q}: removed")


def ep_mail_out(g: Gen, t: float) -> None:
    r = g.rng
    addr, user, pid, q = g.client(), r.choice(LOCAL), g.pid(), g.qid()
    dom = r.choice(DOMAINS)
    sp = f"postfix/submission/smtpd[{pid}]"
    g.log(t, "-", sp, f"connect from unknown[{addr}]")
    g.log(t + 0.2, "-", sp, f"{q}: client=unknown[{addr}], sasl_method=PLAIN, sasl_username={user}")
    g.log(t + 0.3, "-", f"postfix/cleanup[{CLEANUP}]", f"{q}: message-id=<{g.token(9)}@example.net>")
    g.log(t + 0.4, "-", f"postfix/qmgr[{QMGR}]", f"{q}: from=<{user}@example.net>, size={r.randrange(900, 90000)}, nrcpt=1 (queue active)")
    g.log(t + 0.5, "-", sp, f"disconnect from unknown[{addr}] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8")
    g.log(t + 1.4, "-", f"postfix/smtp[{pid + 1}]", f"{q}: to=<{r.choice(LOCAL)}@{dom}>, relay=mx1.{dom}[198.51.100.{r.randrange(2, 250)}]:25, delay=1.4, delays=0.4/0.01/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {g.qid()})")
    g.log(t + 1.4, "-", f"postfix/qmgr[{QMGR}]", f"{q}: removed")


def ep_imap(g: Gen, t: float) -> None:
    r = g.rng
    proto = "imap" if r.random() < 0.85 else "pop3"
    user, addr, mpid, sess = r.choice(LOCAL), g.client(), g.pid(), g.token(12)
    g.log(t, "-", "dovecot", f"{proto}-login: Login: user=<{user}>, method=PLAIN, rip={addr}, lip=192.168.0.1, mpid={mpid}, TLS, session=<{sess}>")
    end = t + r.expovariate(1 / 300)
    if proto == "imap":
        msg = f"Logged out in={r.randrange(100, 9000)} out={r.randrange(500, 90000)} deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0"
    else:
        size = r.randrange(900, 90000)
        msg = f"Disconnected: Logged out top=0/0, retr=1/{size}, del=1/1, size={size}"
    g.log(end, "-", "dovecot", f"{proto}({user})<{mpid}><{sess}>: {msg}")


def ep_mail_noise(g: Gen, t: float) -> None:
    r = g.rng
    addr, pid = g.attacker(), g.pid()
    sp = f"postfix/smtpd[{pid}]"
    if r.random() < 0.5:
        g.log(t, "-", sp, f"connect from unknown[{addr}]")
        g.log(t + 0.3, "pf_lost_after_ehlo", sp, f"lost connection after EHLO from unknown[{addr}]")
        g.log(t + 0.3, "-", sp, f"disconnect from unknown[{addr}] ehlo=1 commands=1")
    elif r.random() < 0.5:
        g.log(t, "dv_no_auth_attempts", "dovecot", f"imap-login: Disconnected: Connection closed (no auth attempts in {r.randrange(0, 3)} secs): user=<>, rip={addr}, lip=192.168.0.1, TLS handshaking: SSL_accept() failed: error:0A00006C:SSL routines::bad key share, session=<{g.token(12)}>")
    else:
        g.log(t, "-", sp, f"warning: hostname host-{r.randrange(1, 250)}.dyn.example.com does not resolve to address {addr}: Name or service not known")
        g.log(t, "-", sp, f"connect from unknown[{addr}]")
        g.log(t + 1, "-", sp, f"disconnect from unknown[{addr}] ehlo=1 quit=1 commands=2")


def ep_smtp_attack(g: Gen, t: float) -> None:
    r = g.rng
    addr, pid = g.attacker(), g.pid()
    sp = f"postfix/smtpd[{pid}]"
    g.log(t, "-", sp, f"connect from unknown[{addr}]")
    k, t = r.random(), t + 0.5
    helo = f"helo=<{r.choice(('WIN-' + g.qid()[:8], 'User', 'localhost', '[' + addr + ']'))}>"
    if k < 0.45:  # SASL password guessing
        n = 1 + int(r.expovariate(0.8))
        for i in range(n):
            what = ("LOGIN authentication failed: UGFzc3dvcmQ6" if r.random() < 0.7
                    else "PLAIN authentication failed: authentication failure")
            g.log(t + 2 * i, "pf_sasl_failed", sp, f"warning: unknown[{addr}]: SASL {what}")
        g.log(t + 2 * n, "pf_lost_after_auth", sp, f"lost connection after AUTH from unknown[{addr}]")
        g.log(t + 2 * n, "pf_disconnect_auth_failed", sp, f"disconnect from unknown[{addr}] ehlo=1 auth=0/{n} commands=1/{n + 1}")
        return
    rcpt = f"{r.choice(LOCAL)}@{r.choice(DOMAINS)}"
    if k < 0.7:
        kind, why = "pf_relay_denied", f"454 4.7.1 <{rcpt}>: Relay access denied"
    elif k < 0.85:
        rcpt = f"{r.choice(BAD_USERS)}@example.net"
        kind, why = "pf_user_unknown", f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table"
    elif k < 0.95:
        kind, why = "pf_client_host_rejected", f"450 4.7.25 Client host rejected: cannot find your hostname, [{addr}]"
    else:
        g.log(t, "pf_pipelining", sp, f"improper command pipelining after EHLO from unknown[{addr}]: MAIL FROM:<{rcpt}>\\r\\nRCPT TO:<{rcpt}>\\r\\n")
        g.log(t + 0.1, "-", sp, f"disconnect from unknown[{addr}] ehlo=1 mail=1 rcpt=0/1 commands=2/3")
        return
    g.log(t, kind, sp, f"NOQUEUE: reject: RCPT from unknown[{addr}]: {why}; from=<{r.choice(BAD_USERS)}@{r.choice(DOMAINS)}> to=<{rcpt}> proto=ESMTP {helo}")
    g.log(t + 0.2, "-", sp, f"disconnect from unknown[{addr}] ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 commands=4/5")


def ep_imap_attack(g: Gen, t: float) -> None:
    r = g.rng
    addr, sess = g.attacker(), g.token(12)
    proto = "imap" if r.random() < 0.7 else "pop3"
    user = r.choice(LOCAL + BAD_USERS)
    tries = r.choice((1, 2, 3, 3))
    worker = g.pid()
    for i in range(tries):
        at = t + 4 * i
        k = r.random()
        if k < 0.4:
            g.log(at, "dv_pam_authenticate_failed", "dovecot", f"auth-worker({worker}): conn unix:auth-worker (pid={worker - 7},uid=113): auth-worker<{i + 1}>: pam({user},{addr},<{sess}>): pam_authenticate() failed: Authentication failure (Password mismatch?)")
        elif k < 0.7:
            g.log(at, "dv_pam_unix_failure", "auth", f"pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={user} rhost={addr}  user={user}")
        else:
            g.log(at, "dv_unknown_user", "dovecot", f"auth: passwd-file({user},{addr},<{sess}>): unknown user")
    closed = "Disconnected: Connection closed" if r.random() < 0.6 else "Disconnected"
    g.log(t + 4 * tries, "dv_login_auth_failed", "dovecot", f"{proto}-login: {closed} (auth failed, {tries} attempts in {4 * tries} secs): user=<{user}>, method=PLAIN, rip={addr}, lip=192.168.0.1, TLS, session=<{sess}>")


# ---------------------------------------------------------------- nginx

SITES = ("example.com", "www.example.com", "shop.example.net")
PAGES = ("/", "/index.html", "/about/", "/blog/", "/blog/2024/01/release-notes/", "/contact/",
         "/products/widget-42", "/search?q=widgets&page=2", "/api/v1/items?limit=50", "/login",
         "/docs/getting-started/", "/feed.xml")
ASSETS = ("/static/css/site.3f9a1c.css", "/static/js/app.9b2e77.js", "/static/img/logo.svg",
          "/favicon.ico", "/static/fonts/inter-var.woff2", "/robots.txt", "/sitemap.xml")
UAS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
       "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
       "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
       "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
       "curl/7.88.1", "python-requests/2.31.0")
BOT_UAS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0.3904.108 Safari/537.36",
           "Mozilla/5.0 zgrab/0.x", "python-requests/2.25.1", "Go-http-client/1.1", "-")
PROBES_LISTED = ("/wp-login.php", "/wp-signup.php", "/phpmyadmin/", "/phpMyAdmin/index.php",
                 "/pma/", "/myadmin/", "/admin/phpmyadmin/", "/xampp/phpmyadmin/", "/mysqladmin/",
                 "/cgi-bin/luci", "/cgi-bin/test.cgi", "/roundcube/", "/webmail/", "/mail/",
                 "//wp-login.php")
PROBES_UNLISTED = ("/.env", "/.git/config", "/xmlrpc.php", "/wp-admin/setup-config.php",
                   "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/boaform/admin/formLogin",
                   "/HNAP1/", "/.aws/credentials", "/server-status", "/owa/auth/logon.aspx")


def ep_access(g: Gen, t: float) -> None:
    r = g.rng
    addr, ua, site = g.client() if r.random() < 0.6 else g.attackers[r.randrange(len(g.attackers) // 2, len(g.attackers))], r.choice(UAS), r.choice(SITES)
    page = r.choice(PAGES)
    status = r.choice((200, 200, 200, 200, 304, 301))
    g.add(t, "-", f'] "GET {page} HTTP/1.1" {status} {r.randrange(300, 40000) if status == 200 else 0} "-" "{ua}"', f"{addr} - - [")
    for i in range(r.randrange(0, 6)):
        g.add(t + 0.05 * (i + 1), "-", f'] "GET {r.choice(ASSETS)} HTTP/2.0" 200 {r.randrange(300, 90000)} "https://{site}{page}" "{ua}"', f"{addr} - - [")
    if r.random() < 0.03:
        user = r.choice(LOCAL)
        g.add(t + 1, "-", f'] "POST /admin/api/save HTTP/1.1" 201 87 "https://{site}/admin/" "{ua}"', f"{addr} - {user} [")
    if r.random() < 0.02:
        g.add(t + 1, "-", f'] "GET /old-page.html HTTP/1.1" 404 153 "-" "{ua}"', f"{addr} - - [")


def ep_access_probe(g: Gen, t: float) -> None:
    r = g.rng
    addr, ua = g.attacker(), r.choice(BOT_UAS)
    for i in range(1 + int(r.expovariate(0.3))):
        k = r.random()
        if k < 0.06:
            g.add(t + i, "acc_tls_garbage", '] "\\x16\\x03\\x01\\x00\\xCA\\x01\\x00\\x00\\xC6\\x03\\x03" 400 157 "-" "-"', f"{addr} - - [")
            continue
        kind, path = (("acc_probe_listed", r.choice(PROBES_LISTED)) if k < 0.6
                      else ("acc_probe_unlisted", r.choice(PROBES_UNLISTED)))
        meth = "POST" if path.endswith("login.php") and r.random() < 0.5 else r.choice(("GET", "GET", "HEAD"))
        g.add(t + i, kind, f'] "{meth} {path} HTTP/1.1" 404 {r.choice((153, 162, 555))} "-" "{ua}"', f"{addr} - - [")


def _err(g: Gen, t: float, kind: str, level: str, msg: str) -> None:
    g.conn += 1
    worker = g.rng.choice((812, 813))  # nginx worker pid; its thread id is the same
    g.add(t, kind, f" [{level}] {worker}#{worker}: *{g.conn} {msg}")


def ep_error(g: Gen, t: float) -> None:
    r = g.rng
    addr, site = g.client() if r.random() < 0.7 else g.attacker(), r.choice(SITES)
    k = r.randrange(8)
    tail = f'client: {addr}, server: {site}, request: "GET {r.choice(PAGES)} HTTP/1.1"'
    if k <= 1:
        asset = r.choice(("/favicon.ico", "/apple-touch-icon.png", "/robots.txt", "/static/img/hero@2x.png"))
        _err(g, t, "-", "error", f'open() "/var/www/html{asset}" failed (2: No such file or directory), client: {addr}, server: {site}, request: "GET {asset} HTTP/1.1", host: "{site}"')
    elif k == 2:
        _err(g, t, "-", "error", f'upstream timed out (110: Connection timed out) while reading response header from upstream, {tail}, upstream: "http://127.0.0.1:8080/api/v1/items", host: "{site}"')
    elif k == 3:
        _err(g, t, "-", "warn", f'an upstream response is buffered to a temporary file /var/cache/nginx/fastcgi_temp/{r.randrange(10)}/{r.randrange(10, 99)}/00000{r.randrange(10000, 99999)} while reading upstream, {tail}, upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "{site}"')
    elif k == 4:
        _err(g, t, "-", "error", f'FastCGI sent in stderr: "PHP message: PHP Warning:  Undefined array key "page" in /var/www/html/index.php on line {r.randrange(10, 400)}" while reading response header from upstream, {tail}, upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "{site}"')
    elif k == 5:
        _err(g, t, "-", "error", f'no user/password was provided for basic authentication, client: {addr}, server: {site}, request: "GET /admin/ HTTP/1.1", host: "{site}"')
    elif k == 6:
        _err(g, t, "-", "info", f"client {addr} closed keepalive connection")
    else:
        _err(g, t, "-", "error", f'connect() failed (111: Connection refused) while connecting to upstream, {tail}, upstream: "http://[::1]:8080/", host: "{site}"')


def ep_error_attack(g: Gen, t: float) -> None:
    r = g.rng
    addr, site = g.attacker(), r.choice(SITES)
    if r.random() < 0.25:
        path = r.choice(PROBES_LISTED[:6])
        _err(g, t, "ng_err_probe", "error", f'open() "/var/www/html{path}" failed (2: No such file or directory), client: {addr}, server: {site}, request: "GET {path} HTTP/1.1", host: "{site}"')
        return
    for i in range(1 + int(r.expovariate(0.5))):
        req = f'request: "{r.choice(("GET", "POST"))} {r.choice(("/admin/", "/private/", "/admin/login"))} HTTP/1.1", host: "{site}"'
        ref = f', referrer: "https://{site}/"' if r.random() < 0.3 else ""
        if r.random() < 0.6:
            user = r.choice(BAD_USERS)
            _err(g, t + 2 * i, "ng_user_not_found", "error", f'user "{user}" was not found in "/etc/nginx/.htpasswd", client: {addr}, server: {site}, {req}{ref}')
        else:
            _err(g, t + 2 * i, "ng_password_mismatch", "error", f'user "{r.choice(LOCAL)}": password mismatch, client: {addr}, server: {site}, {req}{ref}')


Episode = Callable[[Gen, float], None]
# file -> (hostname or "", timestamp style, [(episode, weight)])
PLANS: dict[str, tuple[str, str, list[tuple[Episode, float]]]] = {
    "auth.log": ("web01", "syslog", [(ep_ssh_session, 20), (ep_cron, 60), (ep_sudo_local, 6),
                                     (ep_ssh_noise, 2.4), (ep_ssh_brute, 0.6)]),
    "mail.log": ("mx1", "syslog", [(ep_mail_in, 30), (ep_mail_out, 10), (ep_imap, 40),
                                   (ep_mail_noise, 6), (ep_smtp_attack, 3.5), (ep_imap_attack, 2.5)]),
    "nginx-error.log": ("", "nginx", [(ep_error, 95), (ep_error_attack, 2)]),
    "nginx-access.log": ("", "access", [(ep_access, 80), (ep_access_probe, 1.5)]),
}
