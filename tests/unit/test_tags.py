"""Host and capture tags compile to the groups the matcher reads."""

from __future__ import annotations

import pytest

from banish.errors import ConfigError
from banish.match.tags import compile_regex, expand_tags


@pytest.mark.parametrize(("text", "group", "value"), [
    ("from 192.0.2.1 port", "ip4", "192.0.2.1"),
    ("from ::ffff:192.0.2.1 port", "ip4", "192.0.2.1"),
    ("from 2001:db8::1 port", "ip6", "2001:db8::1"),
    ("from [2001:db8::1] port", "ip6", "2001:db8::1"),
    ("from host.example.com port", "dns", "host.example.com"),
])
def test_host_tag(text: str, group: str, value: str) -> None:
    r = compile_regex("from <HOST> port", option="failregex")
    m = r.pattern.search(text)
    assert m is not None and m.group(group) == value


def test_usedns_no_refuses_names() -> None:
    r = compile_regex("^from <HOST> port", option="failregex", usedns="no")
    assert r.pattern.search("from host.example.com port") is None


def test_captures_and_alternatives() -> None:
    r = compile_regex("user <F-USER>\\S+</F-USER>(?: alias <F-ALT_USER>\\S+</F-ALT_USER>)? "
                      "<F-ID/> <F-PORT/>", option="failregex")
    m = r.pattern.search("user  alias bob 42 ssh")
    assert m is None
    m = r.pattern.search("user bob alias bobby id7 ssh")
    assert m is not None
    groups = r.groups(m)
    assert groups["user"] == "bob" and groups["fid"] == "id7" and groups["fport"] == "ssh"


def test_subnet_and_cidr() -> None:
    r = compile_regex("net <SUBNET>$", option="failregex")
    m = r.pattern.search("net 198.51.100.0/24")
    assert m is not None and m.group("ip4") == "198.51.100.0" and m.group("cidr") == "24"


def test_scoped_inline_flag_is_rewritten() -> None:
    assert expand_tags("^x((?i)abc)") == "^x(?i:abc)"
    assert compile_regex("^x((?i)abc) <HOST>", option="failregex").pattern.search("xABC 192.0.2.1")


def test_unclosed_capture_is_left_alone_and_errors_are_one_line() -> None:
    assert expand_tags("a </F-USER> b") == "a </F-USER> b"
    with pytest.raises(ConfigError) as err:
        compile_regex("(<HOST>", option="failregex")
    assert "failregex" in str(err.value) and "\n" not in str(err.value)
