"""Decision.explain(): a person can see why access was granted or refused."""

from datetime import UTC, datetime
from ipaddress import ip_address

from ca.attributes import AttributeSet
from certgate.policy import RequestContext, Subject, VMInfo, decide, load_policy

POLICY = load_policy(
    """\
version: 1
rules:
  - name: ops-console
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [operator]}
    privileges: [console.interact]
    when: {sources: [10.0.0.0/8]}
    session: {max: 8h, idle: 30m}
  - name: dev
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [dev], groups: [devs]}
    privileges: [console.view]
  - name: no-break
    effect: deny
    vms: {names: ["*"]}
    privileges: [console.break]
  - name: no-contractors
    effect: deny
    vms: {names: ["*"]}
    require: {groups: [contractors]}
""",
    "policy.yaml",
)
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_allowed_explanation_names_rule_location_privileges_and_limits() -> None:
    operator = Subject("alice", AttributeSet(roles=("operator",)))
    decision = decide(
        POLICY, operator, VMInfo("vm01"), RequestContext(ip_address("10.0.0.1"), NOON)
    )
    assert decision.explain() == (
        "allowed by rule ops-console (policy.yaml:3): console.view, console.interact\n"
        "withdrawn by rule no-break (policy.yaml:15): console.break\n"
        "session: max 8h, idle 30m"
    )


def test_denied_explanation_lists_every_failed_condition_of_every_rule() -> None:
    outsider = Subject("bob", AttributeSet(groups=("ops",)))
    context = RequestContext(ip_address("203.0.113.9"), NOON)
    decision = decide(POLICY, outsider, VMInfo("vm01"), context)
    assert decision.explain().splitlines() == [
        "denied:",
        " - withdrawn by rule no-break (policy.yaml:15): console.break",
        " - rule ops-console: requires role operator; holder bob has roles [] groups [ops]",
        " - rule ops-console: source 203.0.113.9 not in whitelist [10.0.0.0/8]",
        " - rule dev: requires role dev or group devs; holder bob has roles [] groups [ops]",
    ]


def test_denied_explanation_says_when_no_rule_selects_the_vm() -> None:
    decision = decide(
        POLICY, Subject("bob", AttributeSet()), VMInfo("db01"), RequestContext(None, NOON)
    )
    assert "no allow rule selects db01" in decision.explain()


def test_denied_explanation_names_the_winning_deny_rule() -> None:
    contractor = Subject("eve", AttributeSet(roles=("dev",), groups=("contractors",)))
    decision = decide(POLICY, contractor, VMInfo("vm01"), RequestContext(None, NOON))
    assert not decision.allowed
    text = decision.explain()
    assert "allowed by rule dev (policy.yaml:10): console.view" in text
    assert "denied by rule no-contractors (policy.yaml:19)" in text
