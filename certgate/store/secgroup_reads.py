"""The security groups and VM interfaces as one ``Fleet``, read with plain SQL.

Shared by the firewall's operations (through ``certgate.store.secgroup_repository``) and the
access core, which resolves a policy's ``from_group`` sources with it: ``policy check`` reads
it without SQLAlchemy (see ``certgate.store.sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_network
from typing import Any

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
from certgate.store.sql import SQL, json_value


def _rule(row: tuple[Any, ...], names: dict[int, str]) -> SecurityRule:
    (rule_id, _group_id, direction, protocol, port_first, port_last, cidr, remote_group_id,
     description) = row
    ports = (PortRange(port_first, port_last)
             if port_first is not None and port_last is not None else None)
    return SecurityRule(
        direction=Direction(direction),
        protocol=Protocol(protocol),
        ports=ports,
        cidr=ip_network(cidr) if cidr else None,
        remote_group=names[remote_group_id] if remote_group_id else None,
        description=description,
        rule_id=rule_id,
    )


def load_fleet(sql: SQL) -> Fleet:
    """Every group with its rules and every NIC with its groups, in four queries."""
    groups = {gid: (name, description, bool(restrict))
              for gid, name, description, restrict in sql.rows(
                  "SELECT id, name, description, restrict_egress FROM security_groups")}
    names = {gid: group[0] for gid, group in groups.items()}
    rules: dict[int, list[SecurityRule]] = {gid: [] for gid in groups}
    for row in sql.rows("SELECT id, group_id, direction, protocol, port_first, port_last, cidr, "
                        "remote_group_id, description FROM security_group_rules ORDER BY id"):
        rules[row[1]].append(_rule(row, names))
    memberships: dict[int, list[tuple[int, str]]] = {}
    for nic_id, group_id, position in sql.rows(
            "SELECT nic_id, group_id, position FROM vm_nic_groups"):
        memberships.setdefault(nic_id, []).append((position, names[group_id]))
    nics = [
        Nic(vm_name, ifname, tuple(ip_network(a) for a in json_value(addresses)),
            tuple(name for _, name in sorted(memberships.get(nic_id, []))))
        for nic_id, ifname, addresses, vm_name in sql.rows(
            "SELECT n.id, n.ifname, n.addresses, v.name FROM vm_nics AS n "
            "JOIN vms AS v ON n.vm_id = v.id")
    ]
    return Fleet.of(
        (SecurityGroup(
            name=name, description=description,
            ingress=tuple(r for r in rules[gid] if r.direction is Direction.INGRESS),
            egress=tuple(r for r in rules[gid] if r.direction is Direction.EGRESS),
            restrict_egress=restrict)
         for gid, (name, description, restrict) in groups.items()),
        nics,
    )


def source_whitelists(sql: SQL, names: Sequence[str]) -> dict[str, tuple[Network, ...]]:
    """The ingress whitelist of each named group that exists (see Fleet.ingress_whitelist)."""
    fleet = load_fleet(sql)
    return {n: fleet.ingress_whitelist(n) for n in names if n in fleet.group_by_name}
