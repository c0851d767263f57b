"""Security groups and VM interfaces in the store, handed out as ``certgate.secgroups`` objects.

Validation of the whole (unknown groups, overlapping addresses) is the caller's job: it reads
the fleet back with ``load_fleet`` inside the same transaction and checks it before commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from certgate.errors import ConflictError, NotFoundError
from certgate.secgroups.model import (
    Fleet,
    Network,
    SecurityGroup,
    SecurityRule,
)
from certgate.store import access_reads, secgroup_reads
from certgate.store.changes import SessionSQL, mark_changed
from certgate.store.repositories import now
from certgate.store.schema import (
    SecurityGroupRow,
    SecurityGroupStateRow,
    SecurityRuleRow,
    VMNicGroupRow,
    VMNicRow,
    VMRow,
)


def load_fleet(session: Session) -> Fleet:
    """Every group with its rules and every NIC with its groups, in four queries."""
    return secgroup_reads.load_fleet(SessionSQL(session))


def generation(session: Session) -> int:
    """The change counter of the security groups (0 before the first change)."""
    return access_reads.security_groups_generation(SessionSQL(session))


def bump_generation(session: Session) -> int:
    """Move the groups' counter and the store's: a policy rule with ``from_group`` depends on
    the groups, so live sessions are re-decided when they change."""
    mark_changed(session)
    row = session.get(SecurityGroupStateRow, 1, with_for_update=True)
    if row is None:
        row = SecurityGroupStateRow(id=1, generation=0)
        session.add(row)
    row.generation += 1
    session.flush()
    return row.generation


def source_whitelists(session: Session, names: Sequence[str]) -> dict[str, tuple[Network, ...]]:
    """The ingress whitelist of each named group that exists (see Fleet.ingress_whitelist)."""
    return secgroup_reads.source_whitelists(SessionSQL(session), names)


def _group_row(session: Session, name: str) -> SecurityGroupRow:
    row = session.execute(
        select(SecurityGroupRow).where(SecurityGroupRow.name == name)
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no security group named {name}")
    return row


def group_names(session: Session) -> list[str]:
    return list(session.execute(select(SecurityGroupRow.name).order_by(SecurityGroupRow.name))
                .scalars())


def add_group(session: Session, name: str, description: str | None,
              restrict_egress: bool) -> None:
    if session.execute(select(SecurityGroupRow.id).where(SecurityGroupRow.name == name)).first():
        raise ConflictError(f"security group {name} already exists")
    session.add(SecurityGroupRow(name=name, description=description,
                                 restrict_egress=restrict_egress, created_at=now()))
    session.flush()


def update_group(session: Session, name: str, *, description: str | None,
                 restrict_egress: bool) -> None:
    row = _group_row(session, name)
    row.description, row.restrict_egress = description, restrict_egress
    session.flush()


def remove_group(session: Session, name: str) -> None:
    """Remove a group and its rules; refused while NICs or other groups' rules use it."""
    row = _group_row(session, name)
    bound = session.execute(
        select(VMNicRow.ifname).join(VMNicGroupRow, VMNicGroupRow.nic_id == VMNicRow.id)
        .where(VMNicGroupRow.group_id == row.id).order_by(VMNicRow.ifname)
    ).scalars().all()
    if bound:
        raise ConflictError(f"security group {name} is still bound to interface(s) "
                            f"{', '.join(bound[:5])}{' ...' if len(bound) > 5 else ''}")
    users = session.execute(
        select(SecurityGroupRow.name).join(SecurityRuleRow,
                                           SecurityRuleRow.group_id == SecurityGroupRow.id)
        .where(SecurityRuleRow.remote_group_id == row.id, SecurityRuleRow.group_id != row.id)
        .distinct().order_by(SecurityGroupRow.name)
    ).scalars().all()
    if users:
        raise ConflictError(f"security group {name} is still referred to by the rules of "
                            f"group(s) {', '.join(users)}")
    session.execute(delete(SecurityRuleRow).where(SecurityRuleRow.group_id == row.id))
    session.delete(row)
    session.flush()


def add_rule(session: Session, group: str, rule: SecurityRule) -> int:
    row = _group_row(session, group)
    remote_id = _group_row(session, rule.remote_group).id if rule.remote_group else None
    rule_row = SecurityRuleRow(
        group_id=row.id, direction=str(rule.direction), protocol=str(rule.protocol),
        port_first=rule.ports.first if rule.ports else None,
        port_last=rule.ports.last if rule.ports else None,
        cidr=str(rule.cidr) if rule.cidr is not None else None,
        remote_group_id=remote_id, description=rule.description, created_at=now(),
    )
    session.add(rule_row)
    session.flush()
    return rule_row.id


def remove_rule(session: Session, group: str, rule_id: int) -> None:
    row = _group_row(session, group)
    rule = session.get(SecurityRuleRow, rule_id)
    if rule is None or rule.group_id != row.id:
        raise NotFoundError(f"security group {group} has no rule {rule_id}")
    session.delete(rule)
    session.flush()


def replace_rules(session: Session, group: SecurityGroup) -> None:
    """Make a stored group exactly ``group`` (its rules are replaced; ids change)."""
    update_group(session, group.name, description=group.description,
                 restrict_egress=group.restrict_egress)
    row = _group_row(session, group.name)
    session.execute(delete(SecurityRuleRow).where(SecurityRuleRow.group_id == row.id))
    for rule in group.rules:
        add_rule(session, group.name, rule)


def count_rules(session: Session) -> int:
    return session.execute(select(func.count(SecurityRuleRow.id))).scalar() or 0


# -- interfaces -------------------------------------------------------------------------------


def add_nic(session: Session, vm: str, ifname: str, addresses: Sequence[Network],
            groups: Sequence[str]) -> None:
    vm_row = session.execute(select(VMRow).where(VMRow.name == vm)).scalar_one_or_none()
    if vm_row is None:
        raise NotFoundError(f"no VM named {vm}")
    taken = session.execute(
        select(VMRow.name).join(VMNicRow, VMNicRow.vm_id == VMRow.id)
        .where(VMNicRow.ifname == ifname)
    ).scalar_one_or_none()
    if taken is not None:
        raise ConflictError(f"interface {ifname} is already registered (VM {taken})")
    group_ids = [_group_row(session, name).id for name in groups]
    nic = VMNicRow(vm_id=vm_row.id, ifname=ifname, addresses=[str(a) for a in addresses],
                   created_at=now())
    session.add(nic)
    session.flush()
    for position, group_id in enumerate(dict.fromkeys(group_ids)):
        session.add(VMNicGroupRow(nic_id=nic.id, group_id=group_id, position=position))
    session.flush()


def _nic_row(session: Session, vm: str, ifname: str) -> VMNicRow:
    row = session.execute(
        select(VMNicRow).join(VMRow, VMNicRow.vm_id == VMRow.id)
        .where(VMRow.name == vm, VMNicRow.ifname == ifname)
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"VM {vm} has no interface {ifname}")
    return row


def remove_nic(session: Session, vm: str, ifname: str) -> None:
    row = _nic_row(session, vm, ifname)
    session.execute(delete(VMNicGroupRow).where(VMNicGroupRow.nic_id == row.id))
    session.delete(row)
    session.flush()


def set_nic_groups(session: Session, vm: str, ifname: str, groups: Sequence[str]) -> None:
    row = _nic_row(session, vm, ifname)
    group_ids = [_group_row(session, name).id for name in groups]
    session.execute(delete(VMNicGroupRow).where(VMNicGroupRow.nic_id == row.id))
    for position, group_id in enumerate(dict.fromkeys(group_ids)):
        session.add(VMNicGroupRow(nic_id=row.id, group_id=group_id, position=position))
    session.flush()
