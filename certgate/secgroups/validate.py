"""Checking a fleet's groups and NICs before anything is stored or applied.

Errors (``SecurityGroupError``) stop everything; warnings (redundant or overlapping rules, rules
that admit nobody yet) are returned for the caller to show, because a whitelist with a
redundant entry is still correct, only harder to read.

A remote-group reference cannot loop: it resolves in one step to the member NICs' addresses,
never to the other group's rules. A group that names itself is Neutron's usual "members may
reach each other" rule and is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

from certgate.secgroups.model import (
    Fleet,
    Network,
    Nic,
    Protocol,
    SecurityGroup,
    SecurityGroupError,
    SecurityRule,
)


def check_fleet(fleet: Fleet) -> list[str]:
    """Raise on the first error; return the warnings, in a stable order."""
    _check_names(fleet)
    _check_addresses(fleet.nics)
    warnings: list[str] = []
    for group in fleet.groups:
        warnings.extend(rule_warnings(group))
        for label, rule in _labelled(group):
            if rule.remote_group is not None and not fleet.member_addresses(rule.remote_group):
                warnings.append(
                    f"group {group.name}: {label} admits nobody yet (group "
                    f"{rule.remote_group} has no member addresses)"
                )
    for nic in fleet.nics:
        if not nic.addresses:
            warnings.append(f"interface {nic.ifname} (VM {nic.vm}) has no addresses: "
                            "everything it sends is dropped as spoofed")
        if not nic.groups:
            warnings.append(f"interface {nic.ifname} (VM {nic.vm}) is in no group: "
                            "all ingress to it is dropped")
    return warnings


def _check_names(fleet: Fleet) -> None:
    seen: set[str] = set()
    for group in fleet.groups:
        if group.name in seen:
            raise SecurityGroupError(f"security group {group.name} is defined twice")
        seen.add(group.name)
        for label, rule in _labelled(group):
            if rule.remote_group is not None and rule.remote_group not in fleet.group_by_name:
                raise SecurityGroupError(
                    f"group {group.name}: {label} refers to unknown security group "
                    f"{rule.remote_group!r}"
                )
    interfaces: dict[str, Nic] = {}
    for nic in fleet.nics:
        if nic.ifname in interfaces:
            raise SecurityGroupError(
                f"interface {nic.ifname} is given twice (VMs {interfaces[nic.ifname].vm} "
                f"and {nic.vm})"
            )
        interfaces[nic.ifname] = nic
        for name in nic.groups:
            if name not in fleet.group_by_name:
                raise SecurityGroupError(
                    f"interface {nic.ifname} (VM {nic.vm}) is bound to unknown security "
                    f"group {name!r}"
                )


def _check_addresses(nics: Iterable[Nic]) -> None:
    """No two NICs may own overlapping addresses: spoofing protection would mean nothing."""
    owned = sorted(
        ((a.version, int(a.network_address), int(a.broadcast_address), a, nic)
         for nic in nics for a in nic.addresses),
        key=lambda t: (t[0], t[1], -t[2]),
    )
    widest: tuple[int, int, Network, Nic] | None = None
    for version, first, last, network, nic in owned:
        if widest is not None and widest[0] == version and first <= widest[1]:
            other_net, other = widest[2], widest[3]
            if other.ifname == nic.ifname:
                raise SecurityGroupError(
                    f"interface {nic.ifname}: addresses {other_net} and {network} overlap"
                )
            raise SecurityGroupError(
                f"address {network} of interface {nic.ifname} (VM {nic.vm}) overlaps "
                f"{other_net} of interface {other.ifname} (VM {other.vm})"
            )
        if widest is None or widest[0] != version or last > widest[1]:
            widest = (version, last, network, nic)


def _labelled(group: SecurityGroup) -> list[tuple[str, SecurityRule]]:
    labelled = []
    for position, rule in enumerate(group.rules, start=1):
        number = rule.rule_id if rule.rule_id is not None else position
        labelled.append((f"rule {number} ({rule.describe()})", rule))
    return labelled


def rule_warnings(group: SecurityGroup) -> list[str]:
    """Redundant (covered by another rule of the group) and partly overlapping rules."""
    warnings: list[str] = []
    rules = _labelled(group)
    for i, (label, rule) in enumerate(rules):
        for j, (other_label, other) in enumerate(rules):
            if i == j or rule.direction != other.direction:
                continue
            if covers(other, rule) and (not covers(rule, other) or j < i):
                verb = "duplicates" if covers(rule, other) else "is shadowed by"
                warnings.append(f"group {group.name}: {label} {verb} {other_label}")
                break
        else:
            for j in range(i + 1, len(rules)):
                other_label, other = rules[j]
                if (rule.direction == other.direction and overlaps(rule, other)
                        and not covers(other, rule) and not covers(rule, other)):
                    warnings.append(f"group {group.name}: {label} overlaps {other_label}")
    return warnings


def _protocol_covers(a: SecurityRule, b: SecurityRule) -> bool:
    return a.protocol is Protocol.ANY or a.protocol is b.protocol


def _peer_covers(a: SecurityRule, b: SecurityRule) -> bool:
    if a.cidr is not None and b.cidr is not None:
        return a.cidr.version == b.cidr.version and b.cidr.subnet_of(a.cidr)  # type: ignore[arg-type]
    return a.remote_group is not None and a.remote_group == b.remote_group


def covers(a: SecurityRule, b: SecurityRule) -> bool:
    """Everything ``b`` admits, ``a`` admits too."""
    if not (_protocol_covers(a, b) and _peer_covers(a, b)):
        return False
    if a.ports is None:
        return True
    return b.ports is not None and b.protocol is a.protocol and a.ports.covers(b.ports)


def overlaps(a: SecurityRule, b: SecurityRule) -> bool:
    """Some packet is admitted by both."""
    if not (_protocol_covers(a, b) or _protocol_covers(b, a)):
        return False
    if a.cidr is not None and b.cidr is not None:
        if a.cidr.version != b.cidr.version or not a.cidr.overlaps(b.cidr):
            return False
    elif a.remote_group != b.remote_group:
        return False
    if a.ports is None or b.ports is None:
        return True
    return a.ports.overlaps(b.ports)
