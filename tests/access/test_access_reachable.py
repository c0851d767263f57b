"""Listing reachable VMs: grouped by approved attributes, it answers exactly as deciding each
VM on its own would (``AccessService.decide`` per VM, and ``approve_attribute_certificates``
per VM for the attributes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca import keys
from ca.attributes import AttributeSet, ClearanceLevel
from certgate.access import AccessService
from certgate.access.approval import (
    ParsedACs,
    VerifiedACs,
    approve_attribute_certificates,
    attributes_by_vm,
)
from certgate.fleet import add_vm, apply_policy
from certgate.installation import Installation
from certgate.policy import INTERACT, VIEW
from certgate.store.repositories import IssuedCertificate
from tests.access.access_pki import START, AccessPki, make_access_pki, revoked

VM_NAMES = ("web-1", "web-2", "db-1", "db-2", "lab-1", "gone-1")

PKI: AccessPki = make_access_pki()
ACS: list[IssuedCertificate] = [
    PKI.ac(attributes=AttributeSet(roles=("operator",))),
    PKI.ac(attributes=AttributeSet(roles=("dba",)), targets=("db-1",)),
    PKI.ac(attributes=AttributeSet(groups=("lab",)), targets=("lab-1", "web-2")),
    PKI.ac(attributes=AttributeSet(clearance=ClearanceLevel.SECRET), targets=("web-1",)),
    PKI.ac(attributes=AttributeSet(grants=("oncall",)), not_after=START - timedelta(minutes=1)),
    PKI.ac(attributes=AttributeSet(grants=("late",)), not_before=START + timedelta(hours=1)),
    PKI.ac(attributes=AttributeSet(roles=("dba",)), targets=("db-2",)),
]
ACS.append(revoked(ACS[0], "keyCompromise"))
ACS.append(PKI.ac(attributes=AttributeSet(roles=("ghost",)), targets=("nowhere",)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(range(len(ACS))), unique=True, max_size=len(ACS)),
       st.lists(st.sampled_from(VM_NAMES), unique=True, max_size=len(VM_NAMES)))
def test_grouped_attributes_equal_each_vms_own_approval(picked: list[int],
                                                        names: list[str]) -> None:
    holdings = [ACS[i] for i in picked]
    parsed, cache = ParsedACs(), VerifiedACs()
    groups = attributes_by_vm(PKI.identity, PKI.identity_cert, holdings, anchors=PKI.anchors,
                              vm_names=names, at=START, cache=cache, parsed=parsed)
    seen = [name for _, members in groups for name in members]
    assert sorted(seen) == sorted(names)
    assert len({attributes for attributes, _ in groups}) == len(groups)
    for attributes, members in groups:
        for name in members:
            assert attributes == approve_attribute_certificates(
                PKI.identity, PKI.identity_cert, holdings, anchors=PKI.anchors, vm=name,
                at=START).attributes


POLICY = """\
version: 1
rules:
  - name: operators
    effect: allow
    vms: {names: ["web-*", "db-*"]}
    require: {roles: [operator]}
    privileges: [console.view]
  - name: dbas
    effect: allow
    vms: {labels: {tier: db}}
    require: {roles: [dba]}
    privileges: [console.interact]
  - name: lab
    effect: allow
    vms: {names: ["lab-*", "gone-*"]}
    require: {groups: [lab]}
    privileges: [console.interact]
  - name: no-prod-db
    effect: deny
    vms: {labels: {env: prod, tier: db}}
    require: {groups: [lab]}
    privileges: [console.interact]
  - name: from-the-office
    effect: allow
    vms: {names: ["web-2"]}
    when: {sources: ["192.0.2.0/24"]}
    privileges: [console.interact]
"""


@pytest.mark.parametrize("source", ["192.0.2.7", "198.51.100.1", None])
def test_listing_equals_deciding_every_vm(installation: Installation,
                                          source: str | None) -> None:
    for name, labels in (("web-1", {"env": "prod"}), ("web-2", {"env": "lab"}),
                         ("db-1", {"env": "prod", "tier": "db"}),
                         ("db-2", {"env": "lab", "tier": "db"}), ("lab-1", {})):
        add_vm(installation, name, "tcp:127.0.0.1:1", labels)
    apply_policy(installation, POLICY, "policy.yaml")
    installation.ca.add_user("alice", email=None, days=1,
                             public_key=keys.generate_private_key("ed25519").public_key())
    ca = installation.ca
    ca.grant("alice", AttributeSet(roles=("operator",)), valid_for=timedelta(hours=1))
    ca.grant("alice", AttributeSet(roles=("dba",)), valid_for=timedelta(hours=1),
             targets=("db-1",))
    ca.grant("alice", AttributeSet(groups=("lab",)), valid_for=timedelta(hours=1),
             targets=("lab-1", "db-1", "db-2"))
    access = AccessService(installation)
    identity = access.identity_of_user("alice")

    for privilege in (VIEW, INTERACT):
        listed = access.reachable(identity, source, privilege=privilege, also=["gone-1"])
        expected = []
        for name in ("db-1", "db-2", "lab-1", "web-1", "web-2"):
            grant = access.decide(identity, name, source)
            if grant.permits(privilege):
                expected.append((grant.vm, grant.decision))
        assert [(vm.name, d) for vm, d in listed if vm.name != "gone-1"] == [
            (vm.name, d) for vm, d in expected if vm is not None]
        assert [vm for vm, _ in listed if vm.name != "gone-1"] == [vm for vm, _ in expected]
        # A VM no longer in the fleet is judged by its name alone: the lab AC is limited to
        # other VMs, so only an untargeted AC could reach it, and none names the lab group.
        assert "gone-1" not in [vm.name for vm, _ in listed]
    # db-1: the dba AC allows interact there, but the lab AC also counts there, and the deny
    # rule withdraws interact from lab members on prod databases.
    assert [vm.name for vm, _ in access.reachable(identity, source, privilege=INTERACT)] == (
        ["lab-1"] + (["web-2"] if source == "192.0.2.7" else []))
    assert [vm.name for vm, _ in access.reachable(identity, source, privilege=VIEW)] == [
        "db-1", "db-2", "lab-1", "web-1", "web-2"]


def test_listing_is_empty_for_a_disabled_user(installation: Installation) -> None:
    add_vm(installation, "web-1", "tcp:127.0.0.1:1", {})
    apply_policy(installation, POLICY, "policy.yaml")
    installation.ca.add_user("alice", email=None, days=1,
                             public_key=keys.generate_private_key("ed25519").public_key())
    installation.ca.grant("alice", AttributeSet(roles=("operator",)),
                          valid_for=timedelta(hours=1))
    access = AccessService(installation)
    identity = access.identity_of_user("alice")
    assert [vm.name for vm, _ in access.reachable(identity, None)] == ["web-1"]
    installation.ca.disable_user("alice")
    assert access.reachable(identity, None) == []
