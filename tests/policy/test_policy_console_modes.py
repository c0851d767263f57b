"""Console keeper policy: force and log privileges, write modes, moderated rules."""

from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from ca.attributes import AttributeSet
from certgate.policy import (
    FORCE,
    INTERACT,
    LOG,
    VIEW,
    Policy,
    PolicyError,
    RequestContext,
    Subject,
    VMInfo,
    console_write_mode,
    decide,
    dump_policy,
    load_policy,
    subject_tags,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONTEXT = RequestContext(ip_address("10.1.2.3"), NOW)
DB = VMInfo("db01", {"tier": "db"})
WEB = VMInfo("web01", {"tier": "web"})

RULES = """
  - name: db-ops
    effect: allow
    vms: {labels: {tier: db}}
    require: {roles: [operator]}
    privileges: [console.force, console.log]
    session:
      write_mode: exclusive
  - name: contractors
    effect: allow
    vms: {names: ["*"]}
    require: {groups: [contractors]}
    privileges: [console.interact]
    session:
      moderated: {observer: role=security, on_observer_leave: end}
  - name: security-watch
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [security]}
    privileges: [console.view]
"""


def policy(rules: str = RULES) -> Policy:
    return load_policy("version: 1\nrules:\n" + rules, "policy.yaml")


def holder(name: str, **attributes: object) -> Subject:
    return Subject(name, AttributeSet(**attributes))  # type: ignore[arg-type]


def test_force_implies_interact_and_view_but_log_stands_alone():
    decision = decide(policy(), holder("olga", roles=("operator",)), DB, CONTEXT)
    assert decision.privileges == {FORCE, INTERACT, VIEW, LOG}
    only_log = policy(RULES.replace("[console.force, console.log]", "[console.log]"))
    assert decide(only_log, holder("olga", roles=("operator",)), DB, CONTEXT).privileges == {
        LOG}


def test_a_deny_of_interact_withdraws_force_too():
    rules = RULES + """
  - name: no-typing
    effect: deny
    vms: {names: [db01]}
    privileges: [console.interact]
"""
    decision = decide(policy(rules), holder("olga", roles=("operator",)), DB, CONTEXT)
    assert decision.privileges == {VIEW, LOG}


def test_write_mode_is_a_property_of_the_console():
    assert console_write_mode(policy(), DB) == "exclusive"
    assert console_write_mode(policy(), WEB) == "shared"


def test_a_moderated_rule_marks_the_decision():
    decision = decide(policy(), holder("carl", groups=("contractors",)), WEB, CONTEXT)
    assert (decision.observer, decision.on_observer_leave) == ("role=security", "end")
    assert "moderated: needs an observer with role=security (end if the observer leaves)" in (
        decision.explain())
    unmoderated = decide(policy(), holder("sam", roles=("security",)), WEB, CONTEXT)
    assert unmoderated.observer is None


def test_matching_an_unmoderated_rule_too_does_not_lift_moderation():
    decision = decide(policy(), holder("carl", roles=("operator",), groups=("contractors",)),
                      DB, CONTEXT)
    assert decision.observer == "role=security"


def test_observer_tags_come_from_identity_and_attributes():
    tags = subject_tags(holder("sam", roles=("security",), groups=("ops",), grants=("x",)))
    assert tags == {"user=sam", "role=security", "group=ops", "grant=x"}


def test_pause_is_the_default_when_the_observer_leaves():
    rules = RULES.replace(", on_observer_leave: end", "")
    decision = decide(policy(rules), holder("carl", groups=("contractors",)), WEB, CONTEXT)
    assert decision.on_observer_leave == "pause"


@pytest.mark.parametrize(("change", "message"), [
    ("write_mode: exclusive", "write_mode: solo",
     ),
    ("observer: role=security", "observer: security"),
    ("on_observer_leave: end", "on_observer_leave: later"),
])
def test_bad_console_settings_are_refused_with_their_place(change, message):
    with pytest.raises(PolicyError) as raised:
        policy(RULES.replace(change, message))
    assert "policy.yaml:" in str(raised.value)


def test_dump_keeps_the_console_settings():
    text = dump_policy(policy())
    again = load_policy(text, "dumped.yaml")
    assert again.rule("db-ops").write_mode == "exclusive"
    assert again.rule("contractors").observer == "role=security"
    assert again.rule("contractors").on_observer_leave == "end"
