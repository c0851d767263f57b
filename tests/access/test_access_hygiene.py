"""Identity hygiene, on SQLite and PostgreSQL: one owner per key (the database enforces it),
disable / enable / rm, and the change counter that tells gateways to re-decide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from itertools import pairwise

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ca import keys
from ca.attributes import AttributeSet
from certgate.access import AccessRefused, AccessService, Credential
from certgate.errors import CertgateError, ConflictError
from certgate.firewall import operations as firewall
from certgate.fleet import add_vm, apply_policy, issue_ssh_certificate, remove_vm
from certgate.installation import Installation
from certgate.store import repositories as repo
from certgate.store.schema import KeyBindingRow, UserRow

OPERATOR = AttributeSet(roles=("operator",))
POLICY = """\
version: 1
rules:
  - name: operators
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [operator]}
    privileges: [console.view, console.interact]
"""


def new_key() -> keys.PublicKey:
    return keys.generate_private_key("ed25519").public_key()


def login_credential(public_key: keys.PublicKey) -> Credential:
    return Credential("key", keys.spki_sha256(public_key), "SHA256:test")


def counter(installation: Installation) -> int:
    with installation.database.read() as session:
        return repo.change_counter(session)


def test_a_key_bound_to_another_users_valid_identity_is_refused_naming_the_owner(
    installation: Installation,
) -> None:
    shared = new_key()
    alice = installation.ca.add_user("alice", email=None, public_key=shared, days=1)

    with pytest.raises(ConflictError, match=f"already belongs to user alice .*identity "
                                            f"certificate {alice.serial}"):
        installation.ca.add_user("dave", email=None, public_key=shared, days=1)

    with installation.database.read() as session:
        assert [u.name for u in repo.list_users(session)] == ["alice"]
    identity = AccessService(installation).identify(login_credential(shared))
    assert identity.user == "alice"


def test_an_openssh_certificate_for_another_users_key_is_refused(
    installation: Installation,
) -> None:
    alice_key = new_key()
    installation.ca.add_user("alice", email=None, public_key=alice_key, days=1)
    installation.ca.add_user("dave", email=None, public_key=new_key(), days=1)

    with pytest.raises(ConflictError, match="already belongs to user alice"):
        issue_ssh_certificate(installation, "dave", alice_key, timedelta(hours=1))


def test_the_database_itself_refuses_a_second_owner_for_a_key(
    installation: Installation,
) -> None:
    shared = new_key()
    installation.ca.add_user("alice", email=None, public_key=shared, days=1)
    installation.ca.add_user("dave", email=None, public_key=new_key(), days=1)
    with installation.database.read() as session:
        dave_id = session.execute(
            select(UserRow.id).where(UserRow.name == "dave")).scalar_one()

    with pytest.raises(IntegrityError), installation.database.write() as session:
        session.add(KeyBindingRow(key_fingerprint=keys.spki_sha256(shared), user_id=dave_id,
                                  bound_at=datetime.now(UTC)))
        session.flush()


def test_a_removed_users_key_may_be_given_to_someone_else(
    installation: Installation,
) -> None:
    shared = new_key()
    installation.ca.add_user("alice", email=None, public_key=shared, days=1)
    installation.ca.grant("alice", OPERATOR, valid_for=timedelta(hours=1))

    user, revoked = installation.ca.remove_user("alice", reason="affiliationChanged")

    assert user.state == "removed"
    assert sorted(c.kind for c in revoked) == ["attribute", "identity"]
    with installation.database.read() as session:
        assert {c.status for c in repo.certificates_of(session, "alice")} == {"revoked"}
        assert {c.revocation_reason for c in repo.certificates_of(session, "alice")} == {
            "affiliationChanged"}
    dave = installation.ca.add_user("dave", email=None, public_key=shared, days=1)
    assert AccessService(installation).identify(login_credential(shared)).serial == dave.serial
    events = [e.event_type for e in installation.audit.entries()]
    assert "user.rm" in events


def test_a_disabled_user_cannot_log_in_until_enabled(installation: Installation) -> None:
    key = new_key()
    installation.ca.add_user("erin", email=None, public_key=key, days=1)
    access = AccessService(installation)

    installation.ca.disable_user("erin")
    with pytest.raises(AccessRefused, match="user erin is disabled"):
        access.identify(login_credential(key))
    with pytest.raises(CertgateError, match="already disabled"):
        installation.ca.disable_user("erin")

    installation.ca.enable_user("erin")
    assert access.identify(login_credential(key)).user == "erin"
    kinds = [e.event_type for e in installation.audit.entries() if e.user == "erin"]
    assert kinds[-2:] == ["user.disable", "user.enable"]


def test_every_change_that_can_affect_access_moves_the_counter(
    installation: Installation,
) -> None:
    steps = []
    start = counter(installation)

    def step(name: str) -> None:
        steps.append((name, counter(installation)))

    installation.ca.add_user("fay", email=None, public_key=new_key(), days=1)
    step("user add")
    ac = installation.ca.grant("fay", OPERATOR, valid_for=timedelta(hours=1))
    step("AC issue")
    installation.ca.revoke(ac.serial, reason="superseded")
    step("revocation")
    installation.ca.disable_user("fay")
    step("disable")
    installation.ca.enable_user("fay")
    step("enable")
    apply_policy(installation, POLICY, "p.yaml")
    step("policy apply")
    add_vm(installation, "vm01", "tcp:127.0.0.1:1", {})
    step("VM add")
    firewall.create_group(installation, "admins-net", description=None,
                           restrict_egress=False)
    step("security group create")
    firewall.add_nic(installation, "vm01", "tap-vm01", [ip_network("10.9.0.5/32")],
                     ["admins-net"])
    step("NIC add (a from_group source changes)")
    remove_vm(installation, "vm01")
    step("VM rm")
    installation.ca.remove_user("fay")
    step("user rm")

    values = [start] + [value for _, value in steps]
    assert all(b == a + 1 for a, b in pairwise(values)), steps


def test_reading_and_auditing_do_not_move_the_counter(installation: Installation) -> None:
    installation.ca.add_user("gus", email=None, public_key=new_key(), days=1)
    before = counter(installation)
    installation.audit.record(installation.event("policy.check", outcome="deny"))
    with installation.database.read() as session:
        repo.list_users(session)
    assert counter(installation) == before
