"""Recording keystrokes is something a policy asks for, per rule."""

from datetime import UTC, datetime
from ipaddress import ip_address

from ca.attributes import AttributeSet
from certgate.policy import RequestContext, Subject, VMInfo, decide, dump_policy, load_policy

POLICY = """\
version: 1
rules:
  - name: watched-operators
    effect: allow
    vms: {names: [prod-*]}
    require: {roles: [operator]}
    privileges: [console.interact]
    session: {max: 1h, record_input: true}
  - name: lab
    effect: allow
    vms: {names: [lab-*]}
    require: {roles: [operator]}
    privileges: [console.interact]
"""

CONTEXT = RequestContext(ip_address("127.0.0.1"), datetime(2026, 11, 28, 12, tzinfo=UTC))
OPERATOR = Subject("alice", AttributeSet(roles=("operator",)))


def test_a_rule_that_asks_for_input_recording_makes_the_decision_record_input() -> None:
    decision = decide(load_policy(POLICY), OPERATOR, VMInfo("prod-db"), CONTEXT)
    assert decision.allowed and decision.record_input
    assert "keystrokes recorded" in decision.explain()


def test_input_is_not_recorded_unless_a_matched_rule_asks() -> None:
    decision = decide(load_policy(POLICY), OPERATOR, VMInfo("lab-1"), CONTEXT)
    assert decision.allowed and not decision.record_input


def test_record_input_survives_a_dump_and_reload() -> None:
    policy = load_policy(POLICY)
    assert load_policy(dump_policy(policy)) == policy
    assert policy.rules[0].record_input and not policy.rules[1].record_input


def test_record_input_must_be_a_boolean() -> None:
    import pytest

    from certgate.policy import PolicyError

    with pytest.raises(PolicyError, match=r"rules\[0\]\.session\.record_input"):
        load_policy(POLICY.replace("record_input: true", "record_input: sometimes"))
