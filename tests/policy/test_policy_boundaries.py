"""The next instant a time window opens or closes: when a live session must be re-decided."""

from __future__ import annotations

from datetime import UTC, datetime

from certgate.policy import VMInfo, load_policy
from certgate.policy.boundaries import next_time_boundary

WINDOWED = """\
version: 1
rules:
  - name: office-hours
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [operator]}
    privileges: [console.view]
    when: {time: {days: [mon-fri], hours: "08:00-18:00", timezone: Europe/Berlin}}
  - name: always
    effect: allow
    vms: {names: ["db*"]}
    require: {roles: [dba]}
    privileges: [console.view]
"""


def test_inside_the_window_the_boundary_is_its_close() -> None:
    policy = load_policy(WINDOWED, "p.yaml")
    # Wednesday 2026-11-25 10:00 UTC is 11:00 in Berlin (CET, UTC+1).
    at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert next_time_boundary(policy, VMInfo("vm01"), at) == datetime(
        2026, 11, 25, 17, 0, tzinfo=UTC)


def test_after_friday_close_the_boundary_is_monday_opening_local_time() -> None:
    policy = load_policy(WINDOWED, "p.yaml")
    at = datetime(2026, 11, 27, 17, 30, tzinfo=UTC)  # Friday 18:30 Berlin
    assert next_time_boundary(policy, VMInfo("vm01"), at) == datetime(
        2026, 11, 30, 7, 0, tzinfo=UTC)


def test_vms_without_time_windows_have_no_boundary() -> None:
    policy = load_policy(WINDOWED, "p.yaml")
    assert next_time_boundary(policy, VMInfo("db01"), datetime.now(UTC)) is None


def test_a_dst_change_moves_the_boundary_in_utc() -> None:
    policy = load_policy(WINDOWED, "p.yaml")
    # Summer time in Berlin (CEST, UTC+2): 18:00 local is 16:00 UTC.
    at = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert next_time_boundary(policy, VMInfo("vm01"), at) == datetime(
        2026, 7, 1, 16, 0, tzinfo=UTC)
