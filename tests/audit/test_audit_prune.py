"""Pruning keeps the remaining chain verifiable, and tampering after a prune is still found."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from audit_samples import sample_event
from sqlalchemy import delete, func, select, update

from certgate.audit.checkpoints import CheckpointSigner, CheckpointVerifier
from certgate.audit.retention import prune_before
from certgate.audit.sessions import start_session
from certgate.audit.verification import VerificationReport
from certgate.errors import AuditError
from certgate.installation import Installation
from certgate.store.schema import AuditEventRow, AuditHeadRow

Verify = Callable[[], VerificationReport]


def _prune(installation: Installation, cutoff: datetime, signer: CheckpointSigner,
           verifier: CheckpointVerifier):  # type: ignore[no-untyped-def]
    return prune_before(installation.database, cutoff, signer=signer, verifier=verifier,
                        actor="test")


def test_prune_removes_old_entries_and_the_rest_still_verifies(
        installation: Installation, signer: CheckpointSigner, verifier: CheckpointVerifier,
        verify: Verify) -> None:
    installation.audit.record_many([sample_event(n) for n in range(10)])  # seq 2..11
    cutoff = datetime.now(UTC)
    installation.audit.record_many([sample_event(n) for n in range(10, 15)])  # seq 12..16
    result = _prune(installation, cutoff, signer, verifier)
    assert (result.removed, result.base_seq) == (11, 11)
    with installation.database.read() as session:
        remaining = session.execute(select(AuditEventRow.seq).order_by(AuditEventRow.seq))
        seqs = list(remaining.scalars())
        head = session.get(AuditHeadRow, 1)
        assert head is not None
        prune_event = session.get(AuditEventRow, 17)
        assert prune_event is not None
    assert seqs == list(range(12, 18))
    assert (head.base_seq, head.seq) == (11, 17)
    assert prune_event.event_type == "audit.prune"
    assert json.loads(prune_event.details)["base_hash"] == head.base_hash
    report = verify()
    assert report.intact, report.problem
    assert report.summary() == "audit chain intact: 6 entries checked, 2 checkpoints"

    installation.audit.record(sample_event(99))
    assert verify().intact


def test_tampering_after_a_prune_is_detected(
        installation: Installation, signer: CheckpointSigner, verifier: CheckpointVerifier,
        verify: Verify) -> None:
    installation.audit.record_many([sample_event(n) for n in range(5)])  # seq 2..6
    cutoff = datetime.now(UTC)
    installation.audit.record_many([sample_event(n) for n in range(5, 10)])  # seq 7..11
    _prune(installation, cutoff, signer, verifier)
    with installation.database.engine.begin() as connection:
        connection.execute(update(AuditEventRow).where(AuditEventRow.seq == 9)
                           .values(user_name="mallory"))
    report = verify()
    assert report.failed_seq == 9 and report.problem is not None
    assert report.problem.startswith("entry 9 was altered")


def test_deleting_the_first_retained_entry_after_a_prune_is_detected(
        installation: Installation, signer: CheckpointSigner, verifier: CheckpointVerifier,
        verify: Verify) -> None:
    installation.audit.record_many([sample_event(n) for n in range(5)])
    cutoff = datetime.now(UTC)
    installation.audit.record_many([sample_event(n) for n in range(5, 10)])
    result = _prune(installation, cutoff, signer, verifier)
    first = result.base_seq + 1
    with installation.database.engine.begin() as connection:
        connection.execute(delete(AuditEventRow).where(AuditEventRow.seq == first))
    assert verify().problem == f"entry {first} is missing (next stored entry is {first + 1})"


def test_a_forged_prune_base_is_detected(installation: Installation, filled: int,
                                         verify: Verify) -> None:
    """Deleting the oldest entries and moving the base by hand leaves no audit.prune record."""
    with installation.database.engine.begin() as connection:
        base_hash = connection.execute(
            select(AuditEventRow.entry_hash).where(AuditEventRow.seq == 5)).scalar_one()
        connection.execute(delete(AuditEventRow).where(AuditEventRow.seq <= 5))
        connection.execute(update(AuditHeadRow).values(base_seq=5, base_hash=base_hash))
    report = verify()
    assert report.problem is not None
    assert report.problem.startswith("the chain starts after entry 5 but no audit.prune event")


def test_prune_keeps_the_entries_of_live_sessions(
        installation: Installation, signer: CheckpointSigner, verifier: CheckpointVerifier,
        verify: Verify) -> None:
    installation.audit.record_many([sample_event(n) for n in range(3)])  # seq 2..4
    live = start_session(installation.database, user="alice", vm="vm1", identity_serial="0a",
                         source="192.0.2.1:5000", privileges=["console.write"],
                         gateway_id="gw1")  # seq 5
    installation.audit.record_many([sample_event(n) for n in range(3)])  # seq 6..8
    result = _prune(installation, datetime.now(UTC), signer, verifier)
    assert result.held_back_by_live_session
    assert (result.removed, result.base_seq) == (4, 4)
    with installation.database.read() as session:
        start = session.execute(select(func.count()).select_from(AuditEventRow).where(
            AuditEventRow.session_id == live.id)).scalar_one()
    assert start == 1
    assert verify().intact


def test_prune_refuses_a_chain_that_does_not_verify(
        installation: Installation, filled: int, signer: CheckpointSigner,
        verifier: CheckpointVerifier) -> None:
    with installation.database.engine.begin() as connection:
        connection.execute(update(AuditEventRow).where(AuditEventRow.seq == 3)
                           .values(actor="mallory"))
    with pytest.raises(AuditError, match="refusing to prune a chain that does not verify: "
                                         "entry 3 was altered"):
        _prune(installation, datetime.now(UTC), signer, verifier)
