"""The canonical YAML form of a parsed policy (fixed key order, normalized values).

``load_policy(dump_policy(p)) == p`` (rule locations aside): useful to show what the
gateway understood, and to compare two documents by meaning rather than by text.
"""

from __future__ import annotations

from typing import Any

import yaml

from certgate.policy.model import Policy, Rule, clearance_name, sorted_privileges
from certgate.policy.values import format_days, format_duration, format_hours


def dump_policy(policy: Policy) -> str:
    """The policy as canonical YAML text."""
    document: dict[str, Any] = {"version": 1}
    if policy.description is not None:
        document["description"] = policy.description
    document["rules"] = [_rule(rule) for rule in policy.rules]
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name}
    if rule.description is not None:
        out["description"] = rule.description
    out["effect"] = rule.effect
    vms: dict[str, Any] = {}
    if rule.vm_names:
        vms["names"] = list(rule.vm_names)
    if rule.vm_labels:
        vms["labels"] = dict(sorted(rule.vm_labels.items()))
    out["vms"] = vms
    require: dict[str, Any] = {}
    for key, values in (
        ("users", rule.users),
        ("roles", rule.any_roles),
        ("groups", rule.any_groups),
    ):
        if values:
            require[key] = list(values)
    if rule.min_clearance is not None:
        require["clearance"] = clearance_name(rule.min_clearance)
    if rule.grants:
        require["grants"] = list(rule.grants)
    if require:
        out["require"] = require
    if rule.privileges:
        out["privileges"] = sorted_privileges(rule.privileges)
    when: dict[str, Any] = {}
    if rule.source_cidrs:
        when["sources"] = [str(n) for n in rule.source_cidrs]
    if rule.source_groups:
        when["from_group"] = list(rule.source_groups)
    if rule.time_windows:
        when["time"] = [
            {
                "days": format_days(w.days).split(","),
                "hours": format_hours(w.start_minute, w.end_minute),
                "timezone": w.timezone,
            }
            for w in rule.time_windows
        ]
    if when:
        out["when"] = when
    session: dict[str, Any] = {}
    if rule.max_session is not None:
        session["max"] = format_duration(rule.max_session)
    if rule.idle_timeout is not None:
        session["idle"] = format_duration(rule.idle_timeout)
    if rule.record_input:
        session["record_input"] = True
    if rule.write_mode is not None:
        session["write_mode"] = rule.write_mode
    if rule.observer is not None:
        session["moderated"] = {"observer": rule.observer,
                                "on_observer_leave": rule.on_observer_leave}
    if session:
        out["session"] = session
    return out
