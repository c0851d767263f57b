"""Request conditions: source whitelist, time windows, session limits."""

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from ca.attributes import AttributeSet
from certgate.policy import Policy, RequestContext, Subject, VMInfo, decide, load_policy

VM = VMInfo("vm01", {"env": "lab"})
ANYONE = Subject("carol", AttributeSet())
WEDNESDAY_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def policy(rules: str) -> Policy:
    return load_policy("version: 1\nrules:\n" + rules, "policy.yaml")


def allowed_from(p: Policy, address: IPv4Address | IPv6Address | None) -> bool:
    return decide(p, ANYONE, VM, RequestContext(address, WEDNESDAY_NOON)).allowed


def allowed_at(p: Policy, at: datetime) -> bool:
    return decide(p, ANYONE, VM, RequestContext(ip_address("10.0.0.1"), at)).allowed


WHITELIST = policy("""
  - name: office
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
    when: {sources: [10.0.0.0/8, 192.0.2.7, "2001:db8::/32"]}
""")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.200.1.1", True),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("203.0.113.9", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("::ffff:10.1.2.3", True),
        ("::ffff:203.0.113.9", False),
    ],
)
def test_source_must_be_in_the_cidr_whitelist(address: str, allowed: bool) -> None:
    assert allowed_from(WHITELIST, ip_address(address)) is allowed


def test_unknown_source_never_matches_an_allow_rule_with_a_whitelist() -> None:
    decision = decide(WHITELIST, ANYONE, VM, RequestContext(None, WEDNESDAY_NOON))
    assert not decision.allowed
    assert "source address unknown" in decision.explain()


def test_unknown_source_matches_a_deny_rule_with_sources_fail_closed() -> None:
    p = policy("""
  - name: all
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
  - name: block-dmz
    effect: deny
    vms: {names: ["*"]}
    when: {sources: [203.0.113.0/24]}
""")
    assert allowed_from(p, ip_address("10.0.0.1"))
    assert not allowed_from(p, ip_address("203.0.113.5"))
    assert not allowed_from(p, None)


def test_rule_without_sources_matches_any_and_unknown_source() -> None:
    p = policy("""
  - name: anywhere
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
""")
    assert allowed_from(p, None)
    assert allowed_from(p, ip_address("2001:db8::5"))


OFFICE_HOURS = policy("""
  - name: office-hours
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
    when: {time: {days: [mon-fri], hours: "08:00-18:00", timezone: Europe/Berlin}}
""")


@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        (datetime(2026, 11, 25, 7, 0, tzinfo=UTC), True),  # Wed 08:00 Berlin (CET = UTC+1)
        (datetime(2026, 11, 25, 6, 59, tzinfo=UTC), False),  # Wed 07:59 Berlin
        (datetime(2026, 11, 25, 16, 59, tzinfo=UTC), True),  # Wed 17:59 Berlin
        (datetime(2026, 11, 25, 17, 0, tzinfo=UTC), False),  # Wed 18:00 Berlin: end exclusive
        (datetime(2026, 11, 28, 12, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 7, 1, 6, 30, tzinfo=UTC), True),  # Wed 08:30 Berlin in summer (UTC+2)
    ],
)
def test_time_window_is_evaluated_on_the_wall_clock_of_its_timezone(
    at: datetime, allowed: bool
) -> None:
    assert allowed_at(OFFICE_HOURS, at) is allowed


NIGHT_SHIFT = policy("""
  - name: night
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
    when: {time: {days: [fri], hours: "22:00-06:00"}}
""")


@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        (datetime(2026, 11, 27, 23, 0, tzinfo=UTC), True),  # Friday night
        (datetime(2026, 11, 28, 5, 59, tzinfo=UTC), True),  # Saturday early: Friday's window
        (datetime(2026, 11, 28, 6, 0, tzinfo=UTC), False),
        (datetime(2026, 11, 27, 3, 0, tzinfo=UTC), False),  # Friday early belongs to Thursday
        (datetime(2026, 11, 28, 23, 0, tzinfo=UTC), False),  # Saturday night
    ],
)
def test_window_crossing_midnight_belongs_to_the_day_it_starts(at: datetime, allowed: bool) -> None:
    assert allowed_at(NIGHT_SHIFT, at) is allowed


def test_aware_times_in_other_zones_are_compared_as_instants() -> None:
    tokyo = datetime(2026, 11, 28, 7, 0, tzinfo=UTC).astimezone()  # Sat 07:00 UTC, any zone
    assert not allowed_at(NIGHT_SHIFT, tokyo)


def test_any_of_several_time_windows_may_match() -> None:
    p = policy("""
  - name: split
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
    when:
      time:
        - {days: [sat-sun]}
        - {hours: ["08:00-09:00", "17:00-24:00"]}
""")
    assert allowed_at(p, datetime(2026, 11, 28, 3, 0, tzinfo=UTC))  # Saturday
    assert allowed_at(p, datetime(2026, 11, 25, 8, 30, tzinfo=UTC))
    assert allowed_at(p, datetime(2026, 11, 25, 23, 59, tzinfo=UTC))
    assert not allowed_at(p, datetime(2026, 11, 25, 12, 0, tzinfo=UTC))


def test_session_limits_take_the_strictest_of_the_matched_allow_rules() -> None:
    p = policy("""
  - name: long
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
    session: {max: 8h, idle: 30m}
  - name: short
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.interact]
    session: {max: 1h30m}
  - name: unlimited
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
  - name: not-matching
    effect: allow
    vms: {names: ["other"]}
    privileges: [console.view]
    session: {max: 1m, idle: 1m}
""")
    decision = decide(p, ANYONE, VM, RequestContext(None, WEDNESDAY_NOON))
    assert decision.max_session == timedelta(hours=1, minutes=30)
    assert decision.idle_timeout == timedelta(minutes=30)


def test_no_session_limits_when_no_rule_sets_them() -> None:
    decision = decide(WHITELIST, ANYONE, VM, RequestContext(ip_address("10.0.0.1"), WEDNESDAY_NOON))
    assert decision.max_session is None
    assert decision.idle_timeout is None
