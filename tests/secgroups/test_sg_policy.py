"""The gateway's policy reads source whitelists from the stored security groups."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address, ip_network

import pytest

from ca.attributes import AttributeSet
from certgate.errors import ConflictError
from certgate.firewall import operations as ops
from certgate.fleet import apply_policy
from certgate.gateway.access import AccessService
from certgate.installation import Installation
from certgate.policy import PolicyError, RequestContext, Subject, VMInfo, decide
from certgate.secgroups.model import Direction, Protocol, SecurityRule

POLICY = """\
version: 1
rules:
  - name: admins
    effect: allow
    vms: {names: ["*"]}
    privileges: [console.view]
    when:
      from_group: admins-net
"""


def allowed(access: AccessService, source: str) -> bool:
    _, policy = access.current_policy()
    context = RequestContext(ip_address(source), datetime.now(UTC))
    return decide(policy, Subject("alice", AttributeSet()), VMInfo("vm1"), context).allowed


def test_the_policy_follows_the_groups_without_a_new_policy_version(
        installation: Installation) -> None:
    with pytest.raises(PolicyError, match=r"policy.yaml:3:5: rule admins: from_group: "
                                          r"unknown security group 'admins-net'"):
        apply_policy(installation, POLICY, "policy.yaml")
    ops.create_group(installation, "admins-net", description=None, restrict_egress=False)
    ops.create_group(installation, "jump", description=None, restrict_egress=False)
    ops.add_rule(installation, "admins-net", SecurityRule(
        Direction.INGRESS, Protocol.TCP, cidr=ip_network("10.1.0.0/24")))
    applied = apply_policy(installation, POLICY, "policy.yaml")
    access = AccessService(installation)
    assert allowed(access, "10.1.0.7")
    assert not allowed(access, "10.9.0.7")
    # a remote-group rule admits the member interfaces' addresses
    ops.add_rule(installation, "admins-net", SecurityRule(
        Direction.INGRESS, Protocol.ANY, remote_group="jump"))
    from certgate.fleet import add_vm

    add_vm(installation, "jumphost", "tcp:127.0.0.1:5900", {})
    ops.add_nic(installation, "jumphost", "tapjump", [ip_network("10.9.0.7/32")], ["jump"])
    assert allowed(access, "10.9.0.7")
    version, _ = access.current_policy()
    assert version == applied.version.version
    with pytest.raises(ConflictError, match="source whitelist of policy rule"):
        ops.remove_group(installation, "admins-net")
