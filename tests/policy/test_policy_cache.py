"""Parsed policies cached between processes: the same policy back, or a fresh parse."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given, settings
from test_policy_index import policies

from certgate.policy import Policy, load_policy
from certgate.policy.serialized import from_data, to_data
from certgate.policy_cache import cache_path, load_policy_cached

TEXT = """\
version: 1
rules:
  - name: ops
    effect: allow
    vms: {names: ["web-*"], labels: {env: prod}}
    require: {roles: [operator], clearance: secret, grants: [oncall]}
    privileges: [console.interact]
    when:
      sources: ["10.0.0.0/8", "2001:db8::/32"]
      time: {days: [mon, fri], hours: "22:00-06:00", timezone: Europe/Berlin}
    session: {max: 8h, idle: 30m, record_input: true}
  - name: no-contractors
    effect: deny
    vms: {labels: {env: prod}}
    require: {groups: [contractors]}
"""


@settings(max_examples=100, deadline=None)
@given(policies())
def test_any_policy_survives_serialization(policy: Policy) -> None:
    again = from_data(json.loads(json.dumps(to_data(policy))))
    assert again == policy
    assert [r.location for r in again.rules] == [r.location for r in policy.rules]


def test_a_cached_policy_is_the_parsed_policy_with_its_locations(tmp_path: Path) -> None:
    first = load_policy_cached(TEXT, "p.yaml", tmp_path)
    path = cache_path(tmp_path, TEXT, "p.yaml")
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600
    second = load_policy_cached(TEXT, "p.yaml", tmp_path)
    assert second == first == load_policy(TEXT, "p.yaml")
    assert [r.location for r in second.rules] == [r.location for r in first.rules]


def test_a_cache_file_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    load_policy_cached(TEXT, "p.yaml", tmp_path)
    path = cache_path(tmp_path, TEXT, "p.yaml")
    forged = json.loads(path.read_text())
    forged["policy"][1]["rules"][1][1] = []  # drop every rule: everything would be denied
    path.write_text(json.dumps(forged))
    os.chmod(path, 0o666)
    assert load_policy_cached(TEXT, "p.yaml", tmp_path) == load_policy(TEXT, "p.yaml")


def test_a_corrupt_cache_file_means_a_fresh_parse(tmp_path: Path) -> None:
    load_policy_cached(TEXT, "p.yaml", tmp_path)
    path = cache_path(tmp_path, TEXT, "p.yaml")
    path.write_text('{"format": 1, "policy": ["Policy", {"rules": ["tuple", [["os.system"')
    assert load_policy_cached(TEXT, "p.yaml", tmp_path) == load_policy(TEXT, "p.yaml")
    path.write_text('{"format": 1, "policy": ["Rule", {"name": "x"}]}')
    assert load_policy_cached(TEXT, "p.yaml", tmp_path) == load_policy(TEXT, "p.yaml")


def test_another_text_is_another_cache_entry(tmp_path: Path) -> None:
    other = TEXT.replace("operator", "admin")
    assert load_policy_cached(other, "p.yaml", tmp_path) != load_policy_cached(
        TEXT, "p.yaml", tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
