"""Loading policy files: the model produced, and errors that name the place."""

import re
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest

from ca.attributes import ClearanceLevel
from certgate.errors import CertgateError
from certgate.policy import (
    INTERACT,
    VIEW,
    PolicyError,
    Rule,
    SourceLocation,
    TimeWindow,
    dump_policy,
    load_policy,
    policy_fingerprint,
)

EXAMPLE = """\
version: 1
description: Console access for the lab fleet
rules:
  - name: ops-consoles
    effect: allow
    vms: {names: ["vm*"], labels: {env: lab}}
    require: {roles: [operator, admin], clearance: confidential}
    privileges: [console.view, console.interact]
    when: {sources: [127.0.0.0/8, 10.0.0.0/8], time: {days: [mon-fri], hours: "08:00-18:00", timezone: Europe/Berlin}}
    session: {max: 8h, idle: 30m}
  - name: no-contractors-on-prod
    effect: deny
    vms: {labels: {env: prod}}
    require: {groups: [contractors]}
"""  # noqa: E501


def test_example_loads_into_the_model() -> None:
    policy = load_policy(EXAMPLE, "policy.yaml")
    assert policy.description == "Console access for the lab fleet"
    ops, deny = policy.rules
    assert ops == Rule(
        name="ops-consoles",
        effect="allow",
        vm_names=("vm*",),
        vm_labels={"env": "lab"},
        any_roles=("operator", "admin"),
        min_clearance=ClearanceLevel.CONFIDENTIAL,
        privileges=frozenset({VIEW, INTERACT}),
        source_cidrs=(ip_network("127.0.0.0/8"), ip_network("10.0.0.0/8")),
        time_windows=(TimeWindow(frozenset(range(5)), 8 * 60, 18 * 60, "Europe/Berlin"),),
        max_session=timedelta(hours=8),
        idle_timeout=timedelta(minutes=30),
    )
    assert ops.location == SourceLocation("policy.yaml", 4, 5)
    assert deny.effect == "deny"
    assert deny.privileges == frozenset()
    assert deny.any_groups == ("contractors",)


def test_the_example_in_the_documentation_is_valid() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "policy.md").read_text()
    example = re.search(r"## Full example\n\n```yaml\n(.*?)```", doc, re.DOTALL)
    assert example is not None
    policy = load_policy(example[1], "docs/policy.md")
    assert [r.name for r in policy.rules] == [
        "ops-consoles",
        "oncall-break",
        "alice-watches-builders",
        "no-contractors-on-prod",
        "no-break-on-db",
    ]


def test_canonical_dump_loads_back_to_the_same_policy() -> None:
    policy = load_policy(EXAMPLE)
    assert load_policy(dump_policy(policy)) == policy


def test_fingerprint_ignores_line_ends_and_trailing_blanks_but_not_content() -> None:
    crlf = EXAMPLE.replace("\n", "   \r\n") + "\r\n\r\n"
    assert policy_fingerprint(crlf) == policy_fingerprint(EXAMPLE)
    assert re.fullmatch(r"[0-9a-f]{64}", policy_fingerprint(EXAMPLE))
    assert policy_fingerprint(EXAMPLE.replace("8h", "9h")) != policy_fingerprint(EXAMPLE)


def test_policy_error_is_a_certgate_error() -> None:
    assert issubclass(PolicyError, CertgateError)


def error_for(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, "policy.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return caught.value


def test_bad_yaml_syntax_names_the_line() -> None:
    error = error_for("version: 1\nrules:\n  - name: [unclosed\n    effect: allow\n")
    assert str(error).startswith("policy.yaml:")
    assert error.line in (3, 4)
    assert "invalid YAML" in str(error)


def test_unknown_key_names_line_path_and_suggests_the_right_one() -> None:
    error = error_for(EXAMPLE.replace("    effect: deny", "    efect: deny"))
    assert str(error).startswith("policy.yaml:12:5: rules[1].efect: unknown key 'efect'")
    assert "did you mean 'effect'?" in str(error)


def test_unknown_key_inside_nested_mapping() -> None:
    error = error_for(EXAMPLE.replace("{groups: [contractors]}", "{group: [contractors]}"))
    assert (error.line, error.path) == (14, "rules[1].require.group")


def test_duplicate_key_is_an_error_not_last_one_wins() -> None:
    text = EXAMPLE.replace("    effect: deny\n", "    effect: deny\n    effect: allow\n")
    error = error_for(text)
    assert str(error).startswith("policy.yaml:13:5: rules[1].effect: duplicate key 'effect'")
    assert "line 12" in str(error)


def test_bad_cidr_names_the_list_item() -> None:
    error = error_for(EXAMPLE.replace("10.0.0.0/8]", "10.0.0.300/8]"))
    assert (error.line, error.path) == (9, "rules[0].when.sources[1]")
    assert "invalid CIDR '10.0.0.300/8'" in str(error)


def test_cidr_with_host_bits_set_is_an_error() -> None:
    error = error_for(EXAMPLE.replace("10.0.0.0/8]", "10.0.0.1/8]"))
    assert "host bits set (did you mean 10.0.0.0/8?)" in str(error)


@pytest.mark.parametrize("duration", ["8", "8x", "0m", "30m8h", "-1h", "8 h"])
def test_bad_duration_names_the_place(duration: str) -> None:
    error = error_for(EXAMPLE.replace("max: 8h", f"max: {duration}"))
    assert (error.line, error.path) == (10, "rules[0].session.max")
    assert "duration" in error.problem


def test_unknown_privilege() -> None:
    error = error_for(EXAMPLE.replace("console.interact]", "console.write]"))
    assert str(error).startswith(
        "policy.yaml:8:32: rules[0].privileges[1]: unknown privilege 'console.write'"
    )


def test_unknown_clearance_lists_the_valid_ones() -> None:
    error = error_for(EXAMPLE.replace("clearance: confidential", "clearance: sekret"))
    assert str(error) == (
        "policy.yaml:7:52: rules[0].require.clearance: unknown clearance 'sekret' "
        "(expected one of unmarked, unclassified, confidential, secret, top-secret)"
    )


def test_duplicate_rule_names_point_at_the_second() -> None:
    error = error_for(EXAMPLE.replace("no-contractors-on-prod", "ops-consoles"))
    assert (error.line, error.path) == (11, "rules[1].name")
    assert "duplicate rule name 'ops-consoles' (first defined at line 4)" in str(error)


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        (
            ("    privileges: [console.view, console.interact]\n", ""),
            "rules[0]",
            "an allow rule must list 'privileges'",
        ),
        (("roles: [operator, admin]", "roles: []"), "rules[0].require.roles", "must not be empty"),
        (
            ('hours: "08:00-18:00"', 'hours: "08:00-08:00"'),
            "rules[0].when.time.hours",
            "empty hours range",
        ),
        (
            ("timezone: Europe/Berlin", "timezone: Mars/Olympus"),
            "rules[0].when.time.timezone",
            "unknown timezone",
        ),
        (("days: [mon-fri]", "days: [mon-fry]"), "rules[0].when.time.days[0]", "unknown day"),
        (("effect: deny", "effect: block"), "rules[1].effect", "unknown effect 'block'"),
        (
            (
                "    require: {groups: [contractors]}",
                "    require: {groups: [contractors]}\n    session: {max: 1h}",
            ),
            "rules[1].session",
            "allow rules only",
        ),
        (("version: 1", "version: 2"), "version", "unsupported version"),
        (("{labels: {env: prod}}", "{}"), "rules[1].vms", "select VMs"),
        (("name: ops-consoles", "name: ops consoles"), "rules[0].name", "invalid rule name"),
        (("name: ops-consoles", "name: ~"), "rules[0].name", "expected a string"),
    ],
)
def test_other_validation_errors_name_the_path(
    change: tuple[str, str], path: str, problem: str
) -> None:
    assert change[0] in EXAMPLE
    error = error_for(EXAMPLE.replace(*change))
    assert error.path == path
    assert problem in error.problem


def test_missing_rules_and_empty_document() -> None:
    assert "missing required key 'rules'" in str(error_for("version: 1\n"))
    assert "empty policy document" in str(error_for("# nothing\n"))


def test_merge_keys_are_refused() -> None:
    text = EXAMPLE.replace("    effect: deny\n", "    <<: {effect: deny}\n")
    assert "merge keys" in error_for(text).problem


def test_empty_rule_list_is_valid_and_denies_all() -> None:
    assert load_policy("version: 1\nrules: []\n").rules == ()
