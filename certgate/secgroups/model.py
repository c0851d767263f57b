"""The security-group model: immutable plain data, made from the store or a YAML file.

A group is a whitelist. Ingress towards a NIC of a member VM is dropped unless one rule of one
of the NIC's groups admits it; egress is allowed unless *every* group of the NIC restricts it
(a group that does not restrict egress behaves like Neutron's "allow all egress" rule, and the
rules of a NIC's groups are a union).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network

from certgate.errors import CertgateError

Network = IPv4Network | IPv6Network


class SecurityGroupError(CertgateError):
    """Invalid security groups or interfaces; nothing was stored or applied."""


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ANY = "any"

    @property
    def has_ports(self) -> bool:
        return self in (Protocol.TCP, Protocol.UDP)


class Direction(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"


@dataclass(frozen=True, order=True)
class PortRange:
    """An inclusive range of TCP/UDP ports (one port when ``first == last``)."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not (1 <= self.first <= self.last <= 65535):
            raise ValueError(f"invalid port range {self.first}-{self.last}")

    def covers(self, other: PortRange) -> bool:
        return self.first <= other.first and other.last <= self.last

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class SecurityRule:
    """One whitelist entry: traffic of ``protocol`` (and ``ports``) from/to a peer.

    The peer is either ``cidr`` or ``remote_group`` (the addresses of the NICs that are members
    of that group, as Neutron's remote groups), never both. For ingress the peer is the
    source, for egress the destination. ``ports`` None means every port.
    """

    direction: Direction
    protocol: Protocol
    ports: PortRange | None = None
    cidr: Network | None = None
    remote_group: str | None = None
    description: str | None = None
    rule_id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.cidr is None) == (self.remote_group is None):
            raise ValueError("a rule has exactly one peer: a CIDR or a remote group")
        if self.ports is not None and not self.protocol.has_ports:
            raise ValueError(f"ports apply to tcp and udp only, not {self.protocol}")

    @property
    def peer(self) -> str:
        return str(self.cidr) if self.cidr is not None else f"group:{self.remote_group}"

    def describe(self) -> str:
        word = "from" if self.direction is Direction.INGRESS else "to"
        ports = f" port {self.ports}" if self.ports else ""
        return f"{self.direction} {self.protocol}{ports} {word} {self.peer}"


@dataclass(frozen=True)
class SecurityGroup:
    """A named whitelist. ``restrict_egress`` False means egress is allowed whatever ``egress``."""

    name: str
    description: str | None = None
    ingress: tuple[SecurityRule, ...] = ()
    egress: tuple[SecurityRule, ...] = ()
    restrict_egress: bool = False

    @property
    def rules(self) -> tuple[SecurityRule, ...]:
        return self.ingress + self.egress

    def remote_groups(self) -> frozenset[str]:
        return frozenset(r.remote_group for r in self.rules if r.remote_group is not None)


@dataclass(frozen=True)
class Nic:
    """A VM's interface as the host sees it (tap/vif/veth name) and the addresses it owns."""

    vm: str
    ifname: str
    addresses: tuple[Network, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fleet:
    """Everything a ruleset is made from: all groups and all NICs, in a stable order."""

    groups: tuple[SecurityGroup, ...] = ()
    nics: tuple[Nic, ...] = ()

    @staticmethod
    def of(groups: Iterable[SecurityGroup], nics: Iterable[Nic]) -> Fleet:
        return Fleet(
            tuple(sorted(groups, key=lambda g: g.name)),
            tuple(sorted(nics, key=lambda n: n.ifname)),
        )

    @cached_property
    def group_by_name(self) -> Mapping[str, SecurityGroup]:
        return {g.name: g for g in self.groups}

    @cached_property
    def members(self) -> Mapping[str, tuple[Nic, ...]]:
        """The NICs bound to each group (every group present, possibly with none)."""
        found: dict[str, list[Nic]] = {g.name: [] for g in self.groups}
        for nic in self.nics:
            for name in nic.groups:
                found.setdefault(name, []).append(nic)
        return {name: tuple(nics) for name, nics in found.items()}

    def member_addresses(self, group: str) -> tuple[Network, ...]:
        """The addresses of a group's members: what a remote-group rule admits."""
        return tuple(a for nic in self.members.get(group, ()) for a in nic.addresses)

    def egress_restricted(self, nic: Nic) -> bool:
        """True when every group of the NIC restricts egress (and it has at least one)."""
        groups = [self.group_by_name[g] for g in nic.groups if g in self.group_by_name]
        return bool(groups) and all(g.restrict_egress for g in groups)

    def ingress_whitelist(self, group: str) -> tuple[Network, ...]:
        """Every source a group admits on ingress, whatever protocol or port: CIDRs as written,
        remote groups as their members' addresses. What a policy's ``from_group`` reads."""
        found = self.group_by_name.get(group)
        if found is None:
            raise SecurityGroupError(f"unknown security group {group!r}")
        networks: list[Network] = []
        for rule in found.ingress:
            if rule.cidr is not None:
                networks.append(rule.cidr)
            elif rule.remote_group is not None:
                networks.extend(self.member_addresses(rule.remote_group))
        return tuple(dict.fromkeys(networks))
