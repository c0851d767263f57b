"""Security groups and VM interfaces in the store, handed out as ``certgate.secgroups`` objects.

Validation of the whole (unknown groups, overlapping addresses) is the caller's job: it reads
the fleet back with ``load_fleet`` inside the same transaction and checks it before commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_network

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from certgate.errors import ConflictError, NotFoundError
from certgate.secgroups.model import (
    Direction,
    Fleet,
    Network,
    Nic,
    PortRange,
    Protocol,
    SecurityGroup,
    SecurityRule,
)
from certgate.store.changes import mark_changed
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
    groups = {row.id: row for row in session.execute(select(SecurityGroupRow)).scalars()}
    rules: dict[int, list[SecurityRule]] = {gid: [] for gid in groups}
    for row in session.execute(select(SecurityRuleRow).order_by(SecurityRuleRow.id)).scalars():
        rules[row.group_id].append(_rule(row, groups))
    memberships: dict[int, list[tuple[int, str]]] = {}
    for link in session.execute(select(VMNicGroupRow)).scalars():
        memberships.setdefault(link.nic_id, []).append((link.position, groups[link.group_id].name))
    nics = [
        Nic(vm_name, row.ifname, tuple(ip_network(a) for a in row.addresses),
            tuple(name for _, name in sorted(memberships.get(row.id, []))))
        for row, vm_name in session.execute(
            select(VMNicRow, VMRow.name).join(VMRow, VMNicRow.vm_id == VMRow.id))
    ]
    return Fleet.of(
        (SecurityGroup(
            name=row.name, description=row.description,
            ingress=tuple(r for r in rules[gid] if r.direction is Direction.INGRESS),
            egress=tuple(r for r in rules[gid] if r.direction is Direction.EGRESS),
            restrict_egress=row.restrict_egress)
         for gid, row in groups.items()),
        nics,
    )


def _rule(row: SecurityRuleRow, groups: dict[int, SecurityGroupRow]) -> SecurityRule:
    ports = (PortRange(row.port_first, row.port_last)
             if row.port_first is not None and row.port_last is not None else None)
    return SecurityRule(
        direction=Direction(row.direction),
        protocol=Protocol(row.protocol),
        ports=ports,
        cidr=ip_network(row.cidr) if row.cidr else None,
        remote_group=groups[row.remote_group_id].name if row.remote_group_id else None,
        description=row.description,
        rule_id=row.id,
    )


def generation(session: Session) -> int:
    """The change counter of the security groups (0 before the first change)."""
    row = session.get(SecurityGroupStateRow, 1)
    return row.generation if row is not None else 0


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
    fleet = load_fleet(session)
    return {n: fleet.ingress_whitelist(n) for n in names if n in fleet.group_by_name}


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
