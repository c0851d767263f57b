"""Who gets which privileges: selection, requirements, allow/deny combination."""

from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from ca.attributes import AttributeSet, ClearanceLevel
from certgate.policy import (
    BREAK,
    INTERACT,
    VIEW,
    Policy,
    RequestContext,
    Subject,
    VMInfo,
    decide,
    load_policy,
    reachable_vms,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONTEXT = RequestContext(ip_address("10.1.2.3"), NOW)
LAB_VM = VMInfo("vm01", {"env": "lab"})


def policy(rules: str) -> Policy:
    return load_policy("version: 1\nrules:\n" + rules, "policy.yaml")


def holder(identity: str = "carol", **attributes: object) -> Subject:
    return Subject(identity, AttributeSet(**attributes))  # type: ignore[arg-type]


def test_no_rules_denies_everything() -> None:
    decision = decide(policy("  []\n"), holder(roles=("admin",)), LAB_VM, CONTEXT)
    assert not decision.allowed
    assert decision.privileges == frozenset()
    assert decision.reasons == ("no allow rule selects vm01",)


OPERATORS = """
  - name: ops
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [operator, admin], groups: [ops]}
    privileges: [console.interact]
"""


def test_holder_with_any_listed_role_is_allowed() -> None:
    decision = decide(policy(OPERATORS), holder(roles=("admin",)), LAB_VM, CONTEXT)
    assert decision.allowed
    assert decision.matched_rules == ("ops",)


def test_holder_in_any_listed_group_is_allowed() -> None:
    assert decide(policy(OPERATORS), holder(groups=("ops",)), LAB_VM, CONTEXT).allowed


def test_holder_without_role_or_group_is_denied() -> None:
    decision = decide(policy(OPERATORS), holder(roles=("dev",)), LAB_VM, CONTEXT)
    assert not decision.allowed
    assert decision.matched_rules == ()


def test_interact_implies_view() -> None:
    decision = decide(policy(OPERATORS), holder(roles=("operator",)), LAB_VM, CONTEXT)
    assert decision.privileges == {VIEW, INTERACT}


def test_break_implies_interact_and_view() -> None:
    rules = OPERATORS.replace("[console.interact]", "[console.break]")
    decision = decide(policy(rules), holder(roles=("operator",)), LAB_VM, CONTEXT)
    assert decision.privileges == {VIEW, INTERACT, BREAK}


def test_rule_naming_a_user_allows_that_identity_only() -> None:
    rules = """
  - name: alice-only
    effect: allow
    vms: {names: ["*"]}
    require: {users: [alice]}
    privileges: [console.view]
"""
    assert decide(policy(rules), holder("alice"), LAB_VM, CONTEXT).allowed
    assert not decide(policy(rules), holder("mallory", roles=("alice",)), LAB_VM, CONTEXT).allowed


def test_rule_without_require_allows_every_holder() -> None:
    rules = """
  - name: everyone-views
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
"""
    assert decide(policy(rules), holder(), LAB_VM, CONTEXT).privileges == {VIEW}


CLEARED = """
  - name: cleared
    effect: allow
    vms: {names: ["*"]}
    require: {clearance: secret}
    privileges: [console.view]
"""


@pytest.mark.parametrize(
    ("clearance", "allowed"),
    [
        (None, False),
        (ClearanceLevel.CONFIDENTIAL, False),
        (ClearanceLevel.SECRET, True),
        (ClearanceLevel.TOP_SECRET, True),
    ],
)
def test_clearance_must_be_at_least_the_required_level(
    clearance: ClearanceLevel | None, allowed: bool
) -> None:
    assert decide(policy(CLEARED), holder(clearance=clearance), LAB_VM, CONTEXT).allowed is allowed


def test_all_listed_grants_are_required() -> None:
    rules = """
  - name: oncall
    effect: allow
    vms: {names: ["*"]}
    require: {grants: [oncall, prod]}
    privileges: [console.break]
"""
    assert not decide(policy(rules), holder(grants=("oncall",)), LAB_VM, CONTEXT).allowed
    both = holder(grants=("prod", "oncall", "other"))
    assert decide(policy(rules), both, LAB_VM, CONTEXT).privileges == {VIEW, INTERACT, BREAK}


def test_requirements_combine_principals_clearance_and_grants_with_and() -> None:
    rules = """
  - name: strict
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [operator], clearance: confidential, grants: [oncall]}
    privileges: [console.view]
"""
    full = holder(roles=("operator",), clearance=ClearanceLevel.SECRET, grants=("oncall",))
    assert decide(policy(rules), full, LAB_VM, CONTEXT).allowed
    no_grant = holder(roles=("operator",), clearance=ClearanceLevel.SECRET)
    assert not decide(policy(rules), no_grant, LAB_VM, CONTEXT).allowed


LABELLED = """
  - name: lab-only
    effect: allow
    vms: {labels: {env: lab, tier: web}}
    privileges: [console.view]
"""


def test_label_selection_requires_every_label() -> None:
    p = policy(LABELLED)
    assert decide(
        p, holder(), VMInfo("a", {"env": "lab", "tier": "web", "x": "y"}), CONTEXT
    ).allowed
    assert not decide(p, holder(), VMInfo("a", {"env": "lab"}), CONTEXT).allowed
    assert not decide(p, holder(), VMInfo("a", {"env": "prod", "tier": "web"}), CONTEXT).allowed


def test_names_and_labels_must_both_match_when_both_given() -> None:
    rules = """
  - name: lab-web
    effect: allow
    vms: {names: ["web*"], labels: {env: lab}}
    privileges: [console.view]
"""
    p = policy(rules)
    assert decide(p, holder(), VMInfo("web1", {"env": "lab"}), CONTEXT).allowed
    assert not decide(p, holder(), VMInfo("db1", {"env": "lab"}), CONTEXT).allowed
    assert not decide(p, holder(), VMInfo("web1", {}), CONTEXT).allowed


@pytest.mark.parametrize(
    ("name", "selected"),
    [("vm01", True), ("vm1", False), ("build-7", True), ("VM01", False), ("xvm01", False)],
)
def test_glob_names_select_vms(name: str, selected: bool) -> None:
    rules = """
  - name: globs
    effect: allow
    vms: {names: ["vm[0-9][0-9]", "build-*"]}
    privileges: [console.view]
"""
    assert decide(policy(rules), holder(), VMInfo(name), CONTEXT).allowed is selected


def test_privileges_of_several_allow_rules_are_unioned() -> None:
    rules = """
  - name: viewers
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
  - name: breakers
    effect: allow
    vms: {names: ["vm*"]}
    require: {groups: [sre]}
    privileges: [console.break]
"""
    decision = decide(policy(rules), holder(groups=("sre",)), LAB_VM, CONTEXT)
    assert decision.privileges == {VIEW, INTERACT, BREAK}
    assert decision.matched_rules == ("viewers", "breakers")


DENY_CONTRACTORS = """
  - name: no-contractors
    effect: deny
    vms: {labels: {env: lab}}
    require: {groups: [contractors]}
"""


@pytest.mark.parametrize("deny_first", [True, False])
def test_deny_rule_wins_over_allow_regardless_of_order(deny_first: bool) -> None:
    rules = DENY_CONTRACTORS + OPERATORS if deny_first else OPERATORS + DENY_CONTRACTORS
    contractor = holder(roles=("operator",), groups=("contractors",))
    decision = decide(policy(rules), contractor, LAB_VM, CONTEXT)
    assert not decision.allowed
    assert decision.privileges == frozenset()
    assert "no-contractors" in decision.matched_rules


def test_deny_rule_does_not_affect_holders_it_does_not_require() -> None:
    decision = decide(
        policy(OPERATORS + DENY_CONTRACTORS), holder(roles=("operator",)), LAB_VM, CONTEXT
    )
    assert decision.allowed


def test_deny_listing_a_privilege_withdraws_only_it_and_what_implies_it() -> None:
    rules = (
        OPERATORS.replace("[console.interact]", "[console.break]")
        + """
  - name: no-typing-on-lab
    effect: deny
    vms: {labels: {env: lab}}
    privileges: [console.interact]
"""
    )
    decision = decide(policy(rules), holder(roles=("operator",)), LAB_VM, CONTEXT)
    assert decision.allowed
    assert decision.privileges == {VIEW}


def test_deny_of_break_leaves_interact() -> None:
    rules = (
        OPERATORS.replace("[console.interact]", "[console.break]")
        + """
  - name: no-break
    effect: deny
    vms: {names: ["*"]}
    privileges: [console.break]
"""
    )
    decision = decide(policy(rules), holder(roles=("operator",)), LAB_VM, CONTEXT)
    assert decision.privileges == {VIEW, INTERACT}
    assert BREAK not in decision.privileges


def test_reachable_vms_lists_only_allowed_vms_sorted_by_name() -> None:
    vms = [
        VMInfo("web2", {"env": "lab", "tier": "web"}),
        VMInfo("db", {"env": "lab"}),
        VMInfo("web1", {"env": "lab", "tier": "web"}),
    ]
    reachable = reachable_vms(policy(LABELLED), holder(), vms, CONTEXT)
    assert [vm.name for vm, _ in reachable] == ["web1", "web2"]
    assert all(decision.privileges == {VIEW} for _, decision in reachable)


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RequestContext(ip_address("10.0.0.1"), datetime(2026, 1, 1, 12, 0))
