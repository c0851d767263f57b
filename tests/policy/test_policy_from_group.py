"""``when: from_group``: a policy rule's source whitelist read from a security group."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address, ip_network

import pytest

from ca.attributes import AttributeSet
from certgate.policy import Policy, RequestContext, Subject, VMInfo, decide, load_policy
from certgate.policy.source_groups import resolve_source_groups

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = """\
version: 1
rules:
  - name: admins-from-admin-net
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [admin]}
    privileges: [console.interact]
    when: {from_group: admins-net}
  - name: no-quarantine
    effect: deny
    vms: {names: ["*"]}
    when: {from_group: [quarantine]}
"""
ADMIN = Subject("alice", AttributeSet(roles=("admin",)))


def allowed(policy: Policy, source: str | None) -> bool:
    context = RequestContext(ip_address(source) if source else None, AT)
    return decide(policy, ADMIN, VMInfo("vm1"), context).allowed


def test_the_loader_keeps_the_group_names() -> None:
    policy = load_policy(POLICY)
    assert policy.rule("admins-from-admin-net").source_groups == ("admins-net",)
    assert policy.rule("no-quarantine").source_groups == ("quarantine",)
    assert policy.source_groups == frozenset({"admins-net", "quarantine"})


def test_a_resolved_group_whitelists_its_networks_and_nothing_else() -> None:
    policy = resolve_source_groups(load_policy(POLICY), {
        "admins-net": [ip_network("10.1.0.0/24")], "quarantine": [ip_network("10.1.0.66/32")]})
    assert allowed(policy, "10.1.0.5")
    assert not allowed(policy, "10.2.0.5")
    assert not allowed(policy, "10.1.0.66")  # denied by the quarantine group
    assert not allowed(policy, None)
    explained = decide(policy, ADMIN, VMInfo("vm1"),
                       RequestContext(ip_address("10.2.0.5"), AT)).explain()
    assert "not in whitelist [10.1.0.0/24] (security group(s) [admins-net])" in explained


def test_unresolved_or_missing_groups_fail_closed() -> None:
    unresolved = load_policy(POLICY)
    assert not allowed(unresolved, "10.1.0.5")
    # admins-net known but empty; quarantine gone: the deny rule now covers every source
    missing = resolve_source_groups(load_policy(POLICY), {"admins-net": []})
    assert not allowed(missing, "10.1.0.5")
    only_allow = resolve_source_groups(load_policy(POLICY.split("  - name: no-q")[0]),
                                       {"admins-net": []})
    assert not allowed(only_allow, "10.1.0.5")


def test_from_group_names_are_checked_where_they_are_written() -> None:
    bad = POLICY.replace("from_group: admins-net", "from_group: 'admins net'")
    with pytest.raises(Exception, match=r"<policy>:8:\d+: .*invalid security group name"):
        load_policy(bad)
