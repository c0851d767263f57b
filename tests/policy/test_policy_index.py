"""The compiled policy index decides exactly as the rule-by-rule reference evaluator does.

Random policies (Hypothesis) mix literal names, prefix/suffix/set globs, label selectors,
principals, clearances, grants, sources, time windows, session limits and duplicate rule
names; every decision and every reachable-VM listing must equal the reference's, reasons and
matched rules included.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address, ip_network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.attributes import AttributeSet, ClearanceLevel
from certgate.policy import (
    ALL_PRIVILEGES,
    Policy,
    RequestContext,
    Rule,
    Subject,
    TimeWindow,
    VMInfo,
    decide,
    load_policy,
    reachable_vms,
)
from certgate.policy.evaluate import decide_by_scanning, reachable_vms_by_scanning

VM_NAMES = ("web-01", "web-02", "web-10", "db-01", "db-prod", "x", "", "web[1]", "a.b-db")
PATTERNS = (
    "*", "web-*", "web-0?", "*-01", "db-*", "*prod*", "[wd]*", "web-[01]*", "x", "db-01",
    "?", "web[1]", "*db", "nomatch", "a.b-*", "w*-1?",
)
LABEL_PAIRS = (("env", "prod"), ("env", "lab"), ("team", "a"), ("team", "b"), ("tier", "1"))
USERS = ("alice", "bob")
ROLES = ("admin", "operator", "dev")
GROUPS = ("ops", "contractors")
GRANTS = ("oncall", "night")
NETWORKS = (ip_network("10.0.0.0/8"), ip_network("192.0.2.0/24"), ip_network("2001:db8::/32"))
ADDRESSES = (
    ip_address("10.1.2.3"), ip_address("192.0.2.9"), ip_address("198.51.100.1"),
    ip_address("2001:db8::5"), ip_address("::ffff:10.9.9.9"), None,
)
WINDOWS = (
    TimeWindow(frozenset({0, 1, 2, 3, 4}), 8 * 60, 18 * 60),
    TimeWindow(frozenset({4}), 22 * 60, 6 * 60, "Europe/Berlin"),
    TimeWindow(frozenset(range(7)), 0, 1440, "America/New_York"),
)
LIMITS = (None, timedelta(minutes=30), timedelta(hours=2))


def subset(values: tuple[object, ...], max_size: int = 3) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(st.sampled_from(values), max_size=max_size, unique=True).map(tuple)


@st.composite
def rules(draw: st.DrawFn, index: int) -> Rule:
    vm_names = draw(subset(PATTERNS))
    labels = dict(
        draw(st.lists(st.sampled_from(LABEL_PAIRS), max_size=2, unique_by=lambda p: p[0]))
    )
    effect = draw(st.sampled_from(["allow", "allow", "deny"]))
    privileges = draw(st.frozensets(st.sampled_from(sorted(ALL_PRIVILEGES))))
    if effect == "allow" and not privileges:
        privileges = frozenset({"console.view"})
    return Rule(
        name=draw(st.sampled_from([f"r{index}", f"r{index}", "dup"])),
        effect=effect,
        vm_names=vm_names,  # type: ignore[arg-type]
        vm_labels=labels,
        users=draw(subset(USERS)),  # type: ignore[arg-type]
        any_roles=draw(subset(ROLES)),  # type: ignore[arg-type]
        any_groups=draw(subset(GROUPS)),  # type: ignore[arg-type]
        min_clearance=draw(st.sampled_from([None, *ClearanceLevel])),
        grants=draw(subset(GRANTS)),  # type: ignore[arg-type]
        privileges=privileges,
        source_cidrs=draw(subset(NETWORKS, 2)),  # type: ignore[arg-type]
        time_windows=draw(subset(WINDOWS, 2)),  # type: ignore[arg-type]
        max_session=draw(st.sampled_from(LIMITS)),
        idle_timeout=draw(st.sampled_from(LIMITS)),
        record_input=draw(st.booleans()),
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    count = draw(st.integers(min_value=0, max_value=12))
    return Policy(tuple(draw(rules(i)) for i in range(count)))


subjects = st.builds(
    Subject,
    st.sampled_from((*USERS, "carol")),
    st.builds(
        AttributeSet,
        roles=subset(ROLES),
        groups=subset(GROUPS),
        clearance=st.sampled_from([None, *ClearanceLevel]),
        grants=subset(GRANTS),
    ),
)
vms = st.builds(
    VMInfo,
    st.sampled_from(VM_NAMES),
    st.lists(st.sampled_from(LABEL_PAIRS), max_size=3, unique_by=lambda p: p[0]).map(dict),
)
contexts = st.builds(
    RequestContext,
    st.sampled_from(ADDRESSES),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(policies(), subjects, st.lists(vms, min_size=1, max_size=6), contexts)
def test_index_decides_as_the_reference_evaluator(
    policy: Policy, subject: Subject, targets: list[VMInfo], context: RequestContext
) -> None:
    for vm in targets:
        assert decide(policy, subject, vm, context) == decide_by_scanning(
            policy, subject, vm, context
        )


@SETTINGS
@given(policies(), subjects, st.lists(vms, max_size=8), contexts)
def test_index_lists_reachable_vms_as_the_reference_evaluator(
    policy: Policy, subject: Subject, targets: list[VMInfo], context: RequestContext
) -> None:
    assert reachable_vms(policy, subject, targets, context) == reachable_vms_by_scanning(
        policy, subject, targets, context
    )


def test_refusal_explains_every_selecting_rule_that_failed() -> None:
    policy = load_policy(
        "version: 1\nrules:\n"
        "  - name: ops\n    effect: allow\n    vms: {names: ['web-*']}\n"
        "    require: {roles: [operator]}\n    privileges: [console.view]\n"
        "  - name: db\n    effect: allow\n    vms: {names: ['db-*']}\n"
        "    require: {roles: [dba]}\n    privileges: [console.view]\n",
        "p.yaml",
    )
    context = RequestContext(ip_address("10.0.0.1"), datetime(2026, 11, 25, 12, tzinfo=UTC))
    decision = decide(policy, Subject("carol", AttributeSet(roles=("dev",))), VMInfo("web-1"),
                      context)
    assert not decision.allowed
    assert decision.reasons == (
        "rule ops: requires role operator; holder carol has roles [dev] groups []",
    )


def test_index_is_compiled_once_per_policy() -> None:
    policy = load_policy(
        "version: 1\nrules:\n  - name: a\n    effect: allow\n    vms: {names: ['*']}\n"
        "    privileges: [console.view]\n",
        "p.yaml",
    )
    assert policy.index is policy.index


@SETTINGS
@given(policies(), subjects, st.lists(vms, min_size=1, max_size=6), contexts)
def test_refusal_reasons_written_on_first_read_equal_the_reference_evaluators(
    policy: Policy, subject: Subject, targets: list[VMInfo], context: RequestContext
) -> None:
    for vm in targets:
        lazy = decide(policy, subject, vm, context)
        if lazy.allowed:
            continue
        assert "reasons" not in vars(lazy)  # not written by decide
        eager = decide_by_scanning(policy, subject, vm, context)
        assert (lazy.allowed, lazy.privileges, lazy.matched_rules) == (
            eager.allowed, eager.privileges, eager.matched_rules)
        assert "reasons" not in vars(lazy)  # nor by reading the outcome
        assert lazy.explain() == eager.explain()
        assert lazy.reasons == eager.reasons
        assert repr(lazy) == repr(eager)
        assert pickle.loads(pickle.dumps(lazy)) == eager


def test_refusal_reasons_are_written_once_and_kept() -> None:
    policy = load_policy(
        "version: 1\nrules:\n"
        "  - name: ops\n    effect: allow\n    vms: {names: ['web-*']}\n"
        "    require: {roles: [operator]}\n    privileges: [console.view]\n",
        "p.yaml",
    )
    context = RequestContext(ip_address("10.0.0.1"), datetime(2026, 11, 25, 12, tzinfo=UTC))
    decision = decide(policy, Subject("carol"), VMInfo("web-1"), context)
    first = decision.reasons
    assert decision.reasons is first
    assert decision.explain() == (
        "denied:\n - rule ops: requires role operator; holder carol has roles [] groups []")
    assert hash(decision) == hash(decide_by_scanning(policy, Subject("carol"), VMInfo("web-1"),
                                                     context))
    with pytest.raises(AttributeError, match="no attribute 'reason'"):
        decision.reason  # type: ignore[attr-defined]  # noqa: B018
