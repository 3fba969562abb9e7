"""Forged lines (`banish.match.forgery`): the layout table, and generated injections.

The corpus (`test_corpus.py`) holds the historic shapes one by one; here hypothesis builds user
names and Referers out of pieces of the servers' own text (the address fields, "port", "ssh2",
": ", quotes, commas) around an innocent address, writes them into the line exactly as the
server would, and runs fail2ban's filters (the installed Debian package) and banish's own over
it: whatever the client writes, nothing but the attacker may be banned.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banish.addr import canonical_address
from banish.cli.main import main
from banish.match.filter import CompiledFilter
from banish.match.forgery import layout_for
from tests.failjson import FAIL2BAN_TEST_NOW, fail2ban_test_clock

from .test_corpus import _HAVE_FAIL2BAN, FAIL2BAN_CONFIG, _definition

ATTACKER, INNOCENT = "198.51.100.1", "203.0.113.9"
SSHD = "Aug 14 11:59:59 host sshd[4242]: "
DOVECOT = "Aug 14 11:59:59 host dovecot: "
NGINX = "2005/08/14 11:59:59 [error] 4242#4242: *1 "
NGINX_TAIL = ', server: example.org, request: "GET /private/ HTTP/1.1", host: "example.org"'

# -- the layout table -------------------------------------------------------------------------

LAYOUT_CASES = [
    # (filter name, line, address the filter read, forged?)
    ("sshd", SSHD + f"Failed password for root from {ATTACKER} port 4242 ssh2", ATTACKER, False),
    ("sshd", SSHD + f"Failed publickey for root from {ATTACKER} port 4242 ssh2: RSA SHA256:x",
     ATTACKER, False),
    # a copy that is not followed by sshd's own end: one place only, and the filter read it
    ("sshd", SSHD + f"Failed password for invalid user x from {INNOCENT} port 22 ssh2 from "
     f"{ATTACKER} port 4242 ssh2", ATTACKER, False),
    # ... and a filter that read the copy there is refused
    ("sshd", SSHD + f"Failed password for invalid user x from {INNOCENT} port 22 ssh2 from "
     f"{ATTACKER} port 4242 ssh2", INNOCENT, True),
    # a password failure carries no key information: only the last place is sshd's
    ("sshd", SSHD + f"Failed password for invalid user x from {INNOCENT} port 22 ssh2: RSA y "
     f"from {ATTACKER} port 4242 ssh2", ATTACKER, False),
    ("sshd", SSHD + f"Failed password for invalid user x from {INNOCENT} port 22 ssh2: RSA y "
     f"from {ATTACKER} port 4242 ssh2", INNOCENT, True),
    # a public key failure does (a certificate's ID is the client's text): two readings
    ("sshd", SSHD + f"Failed publickey for invalid user x from {INNOCENT} port 22 ssh2: RSA y "
     f"from {ATTACKER} port 4242 ssh2: RSA SHA256:abc", ATTACKER, True),
    # sshd's own end not found at all (not a line sshd writes): the looser end decides
    ("sshd", SSHD + f"Failed password for invalid user x from {INNOCENT} port 22 ssh2: RSA y "
     f"from {ATTACKER} port 4242 ssh2: RSA SHA256:abc", ATTACKER, True),
    ("sshd", SSHD + f"Failed password for root from {ATTACKER} port 4242 ssh2", None, False),
    ("sshd", SSHD + "Failed password for root from host.example port 4242 ssh2", "host.example",
     False),
    ("sshd", SSHD + "Failed password for root from ::ffff:198.51.100.1 port 4242 ssh2", ATTACKER,
     False),
    ("sshd", SSHD + "Failed password for root from 2001:db8::1 port 4242 ssh2", "2001:DB8::1",
     False),
    ("dovecot", DOVECOT + f"auth: passwd-file(x,{ATTACKER},<abc>): unknown user", ATTACKER,
     False),
    # the copy is followed by the server's ",<address>,<session>)": only the last place ends
    ("dovecot", DOVECOT + f"auth: passwd-file(x,{INNOCENT},<y>): unknown user,{ATTACKER},<abc>): "
     "unknown user", ATTACKER, False),
    ("dovecot", DOVECOT + f"auth: passwd-file(x,{INNOCENT},<y>): unknown user,{ATTACKER},<abc>): "
     "unknown user", INNOCENT, True),
    ("dovecot", DOVECOT + f"auth: pam(x,{ATTACKER},<abc>): pam_authenticate() failed: "
     "Authentication failure (Password mismatch?)", ATTACKER, False),
    ("nginx-http-auth", NGINX + f'user "x": password mismatch, client: {ATTACKER}' + NGINX_TAIL,
     ATTACKER, False),
    ("nginx-http-auth", NGINX + f'user "x": password mismatch, client: {ATTACKER}' + NGINX_TAIL
     + ', referrer: "a, client: b"', ATTACKER, False),
    # a user name imitating the first part: the copy's "host" holds "/", which nginx refuses
    ("nginx-http-auth", NGINX + f'user "x": password mismatch, client: {INNOCENT}, server: s, '
     'request: "GET / HTTP/1.1", host: "h"": was not found in "/f", client: ' + ATTACKER
     + NGINX_TAIL, ATTACKER, False),
    # a Referer imitating the whole tail: two readings
    ("nginx-http-auth", NGINX + f'user "x": password mismatch, client: {ATTACKER}' + NGINX_TAIL
     + f', referrer: "x": password mismatch, client: {INNOCENT}' + NGINX_TAIL,
     ATTACKER, True),
    # nginx's access log is not the error log: the layout leaves it alone
    ("nginx-botsearch", f'{ATTACKER} - - [14/Aug/2005:11:59:59 +0000] "GET /a, client: 1.2.3.4,'
     ' server: x, request: "" HTTP/1.1" 404 1', ATTACKER, False),
]


@pytest.mark.parametrize(("name", "line", "address", "forged"), LAYOUT_CASES)
def test_layout(name: str, line: str, address: str | None, forged: bool) -> None:
    layout = layout_for(name)
    assert layout is not None
    assert layout.forged(line, address) is forged


def test_other_servers_have_no_layout() -> None:
    assert layout_for("postfix") is None and layout_for("apache-auth") is None


# -- generated injections through the real filters ---------------------------------------------

def _read(flt: str, mode: str, line: str) -> list[str]:
    """What one line makes the filter count (the failure's id, canonical), as the daemon's
    matcher reads a line the prefilter passed on."""
    with fail2ban_test_clock():
        hit = CompiledFilter(_definition(flt, mode)).process(line, FAIL2BAN_TEST_NOW).failure
    if hit is None or hit.fid is None:
        return []
    return [canonical_address(hit.fid) or hit.fid]


def _client_text(*parts: list[str]) -> st.SearchStrategy[str]:
    """Client-written text: a piece from each list in turn (so that whole imitations of the
    server's text come up often), or, as often, any string of the pieces."""
    pieces = sorted({p for part in parts for p in part if p})
    built = st.tuples(*(st.sampled_from(part) for part in parts)).map("".join)
    loose = st.lists(st.sampled_from(pieces), min_size=1, max_size=9).map("".join)
    return st.one_of(built, loose)


SSH_USER = _client_text(["x", "root", ""], [f" from {INNOCENT}", f" {INNOCENT}", ""],
                        [" port 22", ""], [" ssh2", ""], [": RSA y", ": ", " [preauth]", ""],
                        ["", " x", " from"])
DOVECOT_USER = _client_text(["x", ""], [f",{INNOCENT}", ""], [",<y>", ""],
                            ["): unknown user", "): Password mismatch", ")", ""], ["", " x", ","])
_NGINX_LEAD = ['x', 'x"', 'x": password mismatch', 'x" was not found in "/f"']
_NGINX_CLIENT = [f", client: {INNOCENT}", ""]
_NGINX_REST = [', server: example.org, request: "GET / HTTP/1.1", host: "example.org',
               ', server: s', ', server: s, request: "GET / HTTP/1.1"', ""]
NGINX_USER = _client_text(_NGINX_LEAD, _NGINX_CLIENT, [r + '"' if r.endswith("org") else r
                                                       for r in _NGINX_REST], ["", "x"])
NGINX_REFERRER = _client_text(_NGINX_LEAD, _NGINX_CLIENT, _NGINX_REST)

needs_fail2ban = pytest.mark.skipif(not _HAVE_FAIL2BAN and not os.environ.get("CI"),
                                    reason=f"no {FAIL2BAN_CONFIG}")
EXAMPLES = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@needs_fail2ban
@EXAMPLES
@given(user=SSH_USER, method=st.sampled_from(["password", "publickey", "none"]),
       keyinfo=st.sampled_from(["", ": RSA SHA256:abc", ": ED25519 SHA256:x"]),
       origin=st.sampled_from(["fail2ban", "banish"]))
def test_sshd_user_names(user: str, method: str, keyinfo: str, origin: str) -> None:
    line = (SSHD + f"Failed {method} for invalid user {user} from {ATTACKER} port 4242 ssh2"
            + keyinfo)
    for mode in ("normal", "aggressive"):
        assert set(_read(f"{origin}/sshd", mode, line)) <= {ATTACKER}, line


@needs_fail2ban
@EXAMPLES
@given(user=DOVECOT_USER, origin=st.sampled_from(["fail2ban", "banish"]),
       message=st.sampled_from(["unknown user", "Password mismatch"]))
def test_dovecot_user_names(user: str, origin: str, message: str) -> None:
    line = DOVECOT + f"auth: passwd-file({user},{ATTACKER},<abc>): {message}"
    assert set(_read(f"{origin}/dovecot", "normal", line)) <= {ATTACKER}, line


@needs_fail2ban
@EXAMPLES
@given(user=NGINX_USER, referrer=st.none() | NGINX_REFERRER,
       origin=st.sampled_from(["fail2ban", "banish"]),
       message=st.sampled_from([": password mismatch", ' was not found in "/etc/htpasswd"']))
def test_nginx_user_names_and_referers(user: str, referrer: str | None, origin: str,
                                       message: str) -> None:
    line = (NGINX + f'user "{user}"{message}, client: {ATTACKER}' + NGINX_TAIL
            + ("" if referrer is None else f', referrer: "{referrer}"'))
    assert set(_read(f"{origin}/nginx-http-auth", "", line)) <= {ATTACKER}, line


@needs_fail2ban
def test_plain_lines_still_count() -> None:
    """The check refuses copies only: the servers' own lines are read as before."""
    assert _read("fail2ban/sshd", "normal", SSHD + f"Failed password for invalid user x from "
                 f"{ATTACKER} port 4242 ssh2") == [ATTACKER]
    assert _read("fail2ban/dovecot", "normal", DOVECOT + f"auth: passwd-file(x,{ATTACKER},<a>): "
                 "unknown user") == [ATTACKER]
    assert _read("fail2ban/nginx-http-auth", "", NGINX + f'user "x": password mismatch, client: '
                 f"{ATTACKER}" + NGINX_TAIL) == [ATTACKER]


@needs_fail2ban
def test_banish_regex_says_a_line_was_forged(capsys: pytest.CaptureFixture[str]) -> None:
    line = (SSHD + f"Failed password for invalid user x from {INNOCENT} port 22 ssh2: RSA y from "
            f"{ATTACKER} port 4242 ssh2")
    assert main(["regex", "--config", FAIL2BAN_CONFIG, "--now", str(FAIL2BAN_TEST_NOW), line,
                 "sshd"]) == 0
    out = capsys.readouterr().out
    assert "[1] forged" in out and "0 matched" in out, out
