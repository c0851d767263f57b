"""`attr grant`, one AC per transaction, on both databases: each grant moves the change counter,
the audit chain stays one verifiable chain however the grants interleave, and a grant whose
commit fails leaves nothing behind."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from ca.attributes import AttributeSet
from certgate.audit.checkpoints import CheckpointVerifier
from certgate.audit.verification import verify_chain
from certgate.ca_service import GrantRequest
from certgate.errors import CertgateError, StoreError
from certgate.installation import Installation
from certgate.store import repositories as repo
from certgate.store.schema import AuditEventRow, CertificateRow

ATTRIBUTES = AttributeSet(roles=("operator",), groups=("ops",))
VALID_FOR = timedelta(hours=1)


def add_user(installation: Installation, name: str) -> None:
    installation.ca.add_user(name, email=None,
                             public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
                             days=30)


def counter(installation: Installation) -> int:
    with installation.database.read() as session:
        return repo.change_counter(session)


def ac_count(installation: Installation) -> int:
    with installation.database.read() as session:
        return int(session.execute(select(func.count()).select_from(CertificateRow)
                                   .where(CertificateRow.kind == repo.ATTRIBUTE)).scalar_one())


def grant_events(installation: Installation) -> list[AuditEventRow]:
    with installation.database.read() as session:
        return list(session.execute(select(AuditEventRow).where(
            AuditEventRow.event_type == "attr.grant").order_by(AuditEventRow.seq)).scalars())


def assert_chain_intact(installation: Installation) -> int:
    """The chain verifies, and its head covers every stored event (verification walks up to
    the head only, so an event linked past it would otherwise go unseen)."""
    verifier = CheckpointVerifier(
        x509.load_pem_x509_certificate(installation.home.audit_cert.read_bytes()),
        installation.root_certificate)
    report = verify_chain(installation.database, verifier, batch=7)
    assert report.intact, report.problem
    with installation.database.read() as session:
        stored = session.execute(select(func.count()).select_from(AuditEventRow)).scalar_one()
    assert report.entries_checked == stored
    return report.entries_checked


def test_every_grant_moves_the_change_counter_once(installation: Installation) -> None:
    add_user(installation, "alice")
    seen = [counter(installation)]
    for _ in range(5):
        installation.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR, targets=("vm1",))
        seen.append(counter(installation))
    assert seen == list(range(seen[0], seen[0] + 6))
    installation.ca.grant_many([GrantRequest("alice", ATTRIBUTES, VALID_FOR)] * 3)
    assert counter(installation) == seen[-1] + 1


def test_a_grant_is_recorded_with_its_row_and_one_audit_event(
        installation: Installation) -> None:
    add_user(installation, "alice")
    issued = installation.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR,
                                   targets=("vm1", "vm2"))
    with installation.database.read() as session:
        stored = repo.find_certificate(session, issued.serial)
        identity = installation.ca.current_identity(session, "alice")
    assert stored == issued
    assert stored.holder_serial == identity.serial
    assert stored.attributes == ATTRIBUTES.as_dict()
    assert stored.targets == ["vm1", "vm2"]
    assert stored.not_before.utcoffset() == timedelta(0)
    [event_row] = grant_events(installation)
    assert (event_row.serial, event_row.user_name, event_row.outcome) == (
        issued.serial, "alice", "ok")
    assert f'"holder":"{identity.serial}"' in event_row.details


def test_many_grants_one_per_transaction_form_one_verifiable_chain(
        installation: Installation) -> None:
    add_user(installation, "alice")
    add_user(installation, "bob")
    before = assert_chain_intact(installation)
    for n in range(40):
        installation.ca.grant("alice" if n % 2 else "bob", ATTRIBUTES, valid_for=VALID_FOR)
        if n % 10 == 0:  # other audited writes in between, on the same connection
            installation.audit.record(installation.event("test.between", outcome="ok"))
    installation.ca.revoke(installation.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR)
                           .serial, reason="superseded")
    assert assert_chain_intact(installation) == before + 40 + 4 + 1 + 1
    assert len(grant_events(installation)) == 41 == ac_count(installation)


def test_grants_from_several_installations_at_once_never_fork_the_chain(
        installation: Installation) -> None:
    """Separate engines, as separate CLI processes or gateway replicas would have."""
    add_user(installation, "alice")
    start_counter = counter(installation)
    passphrase = installation.passphrase() or b""
    others = [Installation(installation.home, actor=f"admin{n}", passphrase=lambda: passphrase)
              for n in range(3)]
    errors: list[BaseException] = []

    def run(inst: Installation) -> None:
        try:
            for _ in range(15):
                inst.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(inst,)) for inst in others]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for inst in others:
            inst.close()
    assert errors == []
    assert_chain_intact(installation)
    assert ac_count(installation) == 45 == len(grant_events(installation))
    assert counter(installation) == start_counter + 45


def test_a_grant_whose_commit_fails_leaves_no_ac_no_event_and_no_counter_move(
        installation: Installation) -> None:
    add_user(installation, "alice")
    installation.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR)  # the guess is warm
    before = (ac_count(installation), len(grant_events(installation)), counter(installation))
    engine = installation.database.engine

    def refuse(_connection: object) -> None:
        raise OperationalError("COMMIT", None, sqlite3.OperationalError("disk I/O error"))

    event.listen(engine, "commit", refuse)
    try:
        with pytest.raises(StoreError, match="disk I/O error"):
            installation.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR)
    finally:
        event.remove(engine, "commit", refuse)
    assert (ac_count(installation), len(grant_events(installation)),
            counter(installation)) == before
    # The next grant links to the committed head, not to the one that was rolled back.
    installation.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR)
    assert ac_count(installation) == before[0] + 1
    assert counter(installation) == before[2] + 1
    assert_chain_intact(installation)


def test_a_grant_to_a_user_without_a_valid_identity_writes_nothing(
        installation: Installation) -> None:
    add_user(installation, "alice")
    installation.ca.disable_user("alice")
    with installation.database.read() as session:
        identity = installation.ca.current_identity(session, "alice")
    installation.ca.revoke(identity.serial, reason="keyCompromise")
    before = (ac_count(installation), counter(installation))
    with pytest.raises(CertgateError, match="user alice has no valid identity certificate"):
        installation.ca.grant("alice", ATTRIBUTES, valid_for=VALID_FOR)
    with pytest.raises(CertgateError, match="no user"):
        installation.ca.grant("nobody", ATTRIBUTES, valid_for=VALID_FOR)
    assert (ac_count(installation), counter(installation)) == before
    assert grant_events(installation) == []
    assert_chain_intact(installation)
