"""The YAML form of security groups (``certgate sg apply-file``): strict, with places in errors.

It reuses the policy loader's node walker, so a typo gets the same ``FILE:LINE:COL: PATH:
problem`` message as in a policy file. The file declares the complete set of groups::

    version: 1
    groups:
      - name: web
        description: public web servers
        ingress:
          - {protocol: tcp, ports: 443, from: 0.0.0.0/0}
          - {protocol: tcp, ports: 22, from_group: admins}
        egress:                 # present: egress is restricted to these rules
          - {protocol: udp, ports: 53, to: 10.0.0.53}
"""

from __future__ import annotations

from certgate.policy.yamlnodes import Cursor, compose_document
from certgate.secgroups.model import Direction, SecurityGroup, SecurityRule
from certgate.secgroups.values import (
    parse_cidr,
    parse_description,
    parse_group_name,
    parse_ports,
    parse_protocol,
)

SUPPORTED_VERSION = "1"
MAX_FILE_BYTES = 4 * 1024 * 1024
_RULE_KEYS = {
    Direction.INGRESS: ("from", "from_group"),
    Direction.EGRESS: ("to", "to_group"),
}


def load_groups(text: str, source_name: str = "<groups>") -> list[SecurityGroup]:
    """Parse and check a groups file; ``PolicyError`` (a CertgateError) names the place."""
    from certgate.policy.errors import PolicyError

    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise PolicyError(source_name, 1, 1, "", f"file larger than {MAX_FILE_BYTES} bytes")
    root = compose_document(text, source_name)
    if root is None:
        raise PolicyError(source_name, 1, 1, "", "empty document (expected 'version' and "
                          "'groups')")
    doc = Cursor(root, "", source_name).mapping(["version", "groups"],
                                                 required=["version", "groups"])
    if doc["version"].string() != SUPPORTED_VERSION:
        raise doc["version"].error("unsupported version (expected 1)")
    items = doc["groups"].sequence(non_empty=False)
    names: dict[str, int] = {}
    for item in items:
        entries = item.mapping(["name", "description", "ingress", "egress"], required=["name"])
        name = entries["name"].parsed(parse_group_name)
        if name in names:
            raise entries["name"].error(
                f"security group {name!r} is defined twice (first at line {names[name]})")
        names[name] = entries["name"].location.line
    groups = [_group(item, names) for item in items]
    return groups


def _group(cursor: Cursor, names: dict[str, int]) -> SecurityGroup:
    entries = cursor.mapping(["name", "description", "ingress", "egress"])
    ingress = tuple(_rule(item, Direction.INGRESS, names)
                    for item in entries["ingress"].sequence(non_empty=False)) \
        if "ingress" in entries else ()
    egress = tuple(_rule(item, Direction.EGRESS, names)
                   for item in entries["egress"].sequence(non_empty=False)) \
        if "egress" in entries else ()
    return SecurityGroup(
        name=entries["name"].string(),
        description=(entries["description"].parsed(parse_description)
                     if "description" in entries else None),
        ingress=ingress,
        egress=egress,
        restrict_egress="egress" in entries,
    )


def _rule(cursor: Cursor, direction: Direction, names: dict[str, int]) -> SecurityRule:
    cidr_key, group_key = _RULE_KEYS[direction]
    entries = cursor.mapping(["protocol", "ports", cidr_key, group_key, "description"],
                             required=["protocol"])
    protocol = entries["protocol"].parsed(parse_protocol)
    ports = None
    if "ports" in entries:
        if not protocol.has_ports:
            raise entries["ports"].error(f"ports apply to tcp and udp only, not {protocol}")
        ports = entries["ports"].parsed(parse_ports)
    if (cidr_key in entries) == (group_key in entries):
        raise cursor.error(f"give exactly one of {cidr_key!r} (a CIDR) or {group_key!r} "
                           "(a security group)")
    cidr = entries[cidr_key].parsed(parse_cidr) if cidr_key in entries else None
    remote = None
    if group_key in entries:
        remote = entries[group_key].parsed(parse_group_name)
        if remote not in names:
            raise entries[group_key].error(f"unknown security group {remote!r} (not defined "
                                           "in this file)")
    return SecurityRule(
        direction=direction, protocol=protocol, ports=ports, cidr=cidr, remote_group=remote,
        description=(entries["description"].parsed(parse_description)
                     if "description" in entries else None),
    )
