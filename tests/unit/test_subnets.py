"""Subnet bans: widening IPv6 bans, escalation to a subnet, and the options that set them."""

from __future__ import annotations

import pytest

from banish.config.subnets import subnet_policy
from banish.core.subnets import SubnetPolicy, ban_target, covering, escalation
from banish.errors import ConfigError

WIDE6 = SubnetPolicy(banprefix6=64)
ESC = SubnetPolicy(escalate_count=3, escalate_period=3600, escalate_prefix4=24,
                   escalate_prefix6=48)


@pytest.mark.parametrize(("address", "policy", "target"), [
    ("2001:db8:1:2:3:4:5:6", WIDE6, "2001:db8:1:2::/64"),
    ("198.51.100.7", WIDE6, "198.51.100.7"),
    ("2001:db8::1", SubnetPolicy(), "2001:db8::1"),
    ("2001:db8::/32", WIDE6, "2001:db8::/32"),
])
def test_ban_target(address: str, policy: SubnetPolicy, target: str) -> None:
    assert ban_target(address, policy) == target


def test_escalation_counts_recent_bans_in_one_subnet() -> None:
    now = 10_000.0
    two = [("198.51.100.1", now), ("198.51.100.2", now)]
    assert escalation("198.51.100.2", two, ESC, now) is None
    three = [*two, ("198.51.100.3", now)]
    assert escalation("198.51.100.3", three, ESC, now) == "198.51.100.0/24"
    old = [("198.51.100.1", now - 4000), ("198.51.100.2", now), ("198.51.100.3", now)]
    assert escalation("198.51.100.3", old, ESC, now) is None  # one is outside the period
    other = [("198.51.100.1", now), ("198.51.101.2", now), ("198.51.100.3", now)]
    assert escalation("198.51.100.3", other, ESC, now) is None  # another /24
    covered = [*three, ("198.51.0.0/16", now)]
    assert escalation("198.51.100.3", covered, ESC, now) is None  # already banned wider
    six = [(f"2001:db8:0:{i}::1", now) for i in range(3)]
    assert escalation("2001:db8:0:2::1", six, ESC, now) == "2001:db8::/48"
    assert escalation("198.51.100.3", three, SubnetPolicy(), now) is None  # off


def test_covering() -> None:
    assert covering("198.51.100.9", ["198.51.100.0/24", "2001:db8::/64", "10.0.0.1"]) == [
        "198.51.100.0/24"]
    assert covering("not-an-ip", ["198.51.100.0/24"]) == []


def test_options() -> None:
    p = subnet_policy({"banprefix6": "64", "escalate": "3 in 1h", "escalate.prefix4": "24"})
    assert p == SubnetPolicy(64, 3, 3600.0, 24, 48)
    assert subnet_policy({}) == SubnetPolicy()
    assert subnet_policy({"escalate": "off"}).escalates is False


@pytest.mark.parametrize(("options", "option"), [
    ({"banprefix6": "129"}, "banprefix6"),
    ({"banprefix6": "x"}, "banprefix6"),
    ({"escalate": "lots"}, "escalate"),
    ({"escalate": "1 in 1h"}, "escalate"),
    ({"escalate": "3 in forever"}, "escalate"),
    ({"escalate.prefix4": "32"}, "escalate.prefix4"),
])
def test_bad_options_name_the_option(options: dict[str, str], option: str) -> None:
    with pytest.raises(ConfigError) as err:
        subnet_policy(options)
    assert option in str(err.value)
