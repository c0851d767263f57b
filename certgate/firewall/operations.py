"""Administering security groups: each change is checked whole, stored and audited together.

Every change reads the fleet back inside its transaction and runs ``check_fleet`` on it, so an
invalid result (an unknown group, two VMs claiming one address) rolls back with nothing
stored. Its audit event carries the hash of the nftables ruleset the change leads to; an
apply's event carries the hash of what was loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from certgate.audit.log import append_in
from certgate.errors import CertgateError
from certgate.firewall.backends import Backend, backend_for
from certgate.firewall.errors import FirewallError
from certgate.firewall.policy_groups import check_group_unused_by_policy
from certgate.installation import Installation
from certgate.policy import Policy, load_policy
from certgate.secgroups.model import Fleet, Network, SecurityGroup, SecurityRule
from certgate.secgroups.nftables import render_nftables
from certgate.secgroups.validate import check_fleet, rule_warnings
from certgate.secgroups.yamlform import load_groups
from certgate.store import repositories as main_repo
from certgate.store import secgroup_repository as repo


@dataclass(frozen=True)
class Change:
    """What a stored change led to: warnings about the result and its ruleset's hash."""

    warnings: list[str]
    ruleset_sha256: str
    rule_id: int | None = None


def _commit_change(inst: Installation, session: Any, event_type: str,
                   **fields: Any) -> Change:
    fleet = repo.load_fleet(session)
    warnings = check_fleet(fleet)
    repo.bump_generation(session)
    sha = render_nftables(fleet).sha256
    details = {**fields.pop("details", {}), "ruleset_sha256": sha}
    append_in(session, [inst.event(event_type, outcome="ok", details=details, **fields)])
    return Change(warnings, sha)


def create_group(inst: Installation, name: str, *, description: str | None,
                 restrict_egress: bool) -> Change:
    with inst.admin_write() as session:
        repo.add_group(session, name, description, restrict_egress)
        return _commit_change(inst, session, "sg.create", details={
            "group": name, "description": description, "restrict_egress": restrict_egress})


def update_group(inst: Installation, name: str, *, description: str | None,
                 restrict_egress: bool | None) -> Change:
    with inst.admin_write() as session:
        current = repo.load_fleet(session).group_by_name.get(name)
        if current is None:
            raise CertgateError(f"no security group named {name}")
        description = current.description if description is None else description
        restrict = current.restrict_egress if restrict_egress is None else restrict_egress
        repo.update_group(session, name, description=description, restrict_egress=restrict)
        return _commit_change(inst, session, "sg.update", details={
            "group": name, "description": description, "restrict_egress": restrict})


def _policy_in_force(session: Any) -> Policy | None:
    stored = main_repo.current_policy(session)
    return load_policy(stored.source, stored.source_name) if stored else None


def remove_group(inst: Installation, name: str) -> Change:
    with inst.admin_write() as session:
        check_group_unused_by_policy(_policy_in_force(session), name)
        repo.remove_group(session, name)
        return _commit_change(inst, session, "sg.remove", details={"group": name})


def add_rule(inst: Installation, group: str, rule: SecurityRule) -> Change:
    with inst.admin_write() as session:
        rule_id = repo.add_rule(session, group, rule)
        change = _commit_change(inst, session, "sg.rule.add", details={
            "group": group, "rule_id": rule_id, "rule": rule.describe()})
        return Change(change.warnings, change.ruleset_sha256, rule_id)


def remove_rule(inst: Installation, group: str, rule_id: int) -> Change:
    with inst.admin_write() as session:
        repo.remove_rule(session, group, rule_id)
        return _commit_change(inst, session, "sg.rule.remove", details={
            "group": group, "rule_id": rule_id})


def add_nic(inst: Installation, vm: str, ifname: str, addresses: Sequence[Network],
            groups: Sequence[str]) -> Change:
    with inst.admin_write() as session:
        repo.add_nic(session, vm, ifname, addresses, groups)
        return _commit_change(inst, session, "vm.nic.add", vm=vm, details={
            "interface": ifname, "addresses": [str(a) for a in addresses],
            "groups": list(groups)})


def remove_nic(inst: Installation, vm: str, ifname: str) -> Change:
    with inst.admin_write() as session:
        repo.remove_nic(session, vm, ifname)
        return _commit_change(inst, session, "vm.nic.remove", vm=vm,
                              details={"interface": ifname})


def set_nic_groups(inst: Installation, vm: str, ifname: str, groups: Sequence[str]) -> Change:
    with inst.admin_write() as session:
        repo.set_nic_groups(session, vm, ifname, groups)
        return _commit_change(inst, session, "vm.nic.groups", vm=vm, details={
            "interface": ifname, "groups": list(groups)})


def stored_fleet(inst: Installation) -> Fleet:
    with inst.database.read() as session:
        return repo.load_fleet(session)


# -- applying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A ruleset ready to load, and what a person should see before it is."""

    fleet: Fleet
    warnings: list[str]
    backend: Backend
    text: str
    sha256: str


@dataclass(frozen=True)
class Applied:
    plan: Plan
    mode: str  # unchanged | incremental | full | dry-run
    seconds: float
    diff: list[str] | None = None
    loaded_error: str | None = None


def make_plan(inst: Installation, fleet: Fleet, backend_name: str) -> Plan:
    warnings = check_fleet(fleet)
    backend = backend_for(backend_name, inst.home.root / "firewall")
    text, sha = backend.render(fleet)
    return Plan(fleet, warnings, backend, text, sha)


def apply(inst: Installation, backend_name: str, *, dry_run: bool,
          full: bool = False) -> Applied:
    """Load the stored groups into this host's packet filter (or, dry, show what would be)."""
    return _apply(inst, make_plan(inst, stored_fleet(inst), backend_name), dry_run=dry_run,
                  full=full, source=None)


def _apply(inst: Installation, plan: Plan, *, dry_run: bool, full: bool,
           source: str | None) -> Applied:
    details: dict[str, Any] = {"backend": plan.backend.name, "ruleset_sha256": plan.sha256,
                               "warnings": len(plan.warnings)}
    if source is not None:
        details["source"] = source
    if dry_run:
        try:
            diff = plan.backend.diff(plan.text)
            error = None
        except FirewallError as exc:
            diff, error = None, str(exc)
        inst.audit.record(inst.event("sg.plan", outcome="ok", details=details))
        return Applied(plan, "dry-run", 0.0, diff, error)
    try:
        outcome = plan.backend.apply(plan.text, plan.sha256, full=full)
    except CertgateError as exc:
        inst.record_failure("sg.apply", str(exc), details=details)
        raise
    inst.audit.record(inst.event("sg.apply", outcome="ok", details={
        **details, "mode": outcome.mode, "previous_sha256": outcome.previous_sha256,
        "seconds": round(outcome.seconds, 4)}))
    return Applied(plan, outcome.mode, outcome.seconds)


def unload(inst: Installation, backend_name: str) -> bool:
    """Remove certgate's table or chains from this host's packet filter."""
    backend = backend_for(backend_name, inst.home.root / "firewall")
    try:
        removed = backend.unload()
    except CertgateError as exc:
        inst.record_failure("sg.unload", str(exc), details={"backend": backend_name})
        raise
    inst.audit.record(inst.event("sg.unload", outcome="ok", details={
        "backend": backend_name, "removed": removed}))
    return removed


def apply_file(inst: Installation, text: str, source_name: str, backend_name: str, *,
               dry_run: bool) -> Applied:
    """Make the groups of a YAML file the stored groups (all of them), then load them.

    The file is checked together with the stored interfaces before anything is written;
    a group missing from the file is removed, unless an interface is still bound to it.
    """
    groups = load_groups(text, source_name)
    fleet = Fleet.of(groups, stored_fleet(inst).nics)
    plan = make_plan(inst, fleet, backend_name)
    if not dry_run:
        with inst.admin_write() as session:
            _store_groups(session, groups)
            repo.bump_generation(session)
            stored = repo.load_fleet(session)
            sha = render_nftables(stored).sha256
            append_in(session, [inst.event("sg.apply-file", outcome="ok", details={
                "source": source_name, "groups": [g.name for g in groups],
                "ruleset_sha256": sha})])
    return _apply(inst, plan, dry_run=dry_run, full=False, source=source_name)


def _store_groups(session: Any, groups: list[SecurityGroup]) -> None:
    wanted = {g.name for g in groups}
    existing = set(repo.group_names(session))
    for group in groups:
        if group.name not in existing:
            repo.add_group(session, group.name, group.description, group.restrict_egress)
    for group in groups:
        repo.replace_rules(session, group)
    policy = _policy_in_force(session) if existing - wanted else None
    for name in sorted(existing - wanted):
        check_group_unused_by_policy(policy, name)
        repo.remove_group(session, name)


def group_warnings(group: SecurityGroup) -> list[str]:
    return rule_warnings(group)
