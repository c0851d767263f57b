"""Verification finds every kind of tampering with the stored chain, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from certgate.audit.chain import AuditEvent, link
from certgate.audit.checkpoints import CheckpointSigner
from certgate.audit.log import entry_from_row
from certgate.audit.verification import VerificationReport
from certgate.installation import Installation
from certgate.store.schema import AuditCheckpointRow, AuditEventRow, AuditHeadRow

Verify = Callable[[], VerificationReport]
TAMPERED_SEQ = 10

COLUMNS = ("ts", "event_type", "actor", "outcome", "user_name", "vm", "serial", "source",
           "session_id", "details", "prev_hash", "entry_hash")


def _other_value(column: str, current: Any) -> Any:
    if column == "ts":
        return current + timedelta(microseconds=1)
    if column == "outcome":
        return "deny" if current != "deny" else "allow"
    if column in ("prev_hash", "entry_hash"):
        return ("1" if current[0] != "1" else "2") + current[1:]
    if column == "details":
        return current.replace('"n":', '"n":1')
    return (current or "") + "x"


def _execute(installation: Installation, statement: Any) -> None:
    with installation.database.engine.begin() as connection:
        connection.execute(statement)


def test_intact_chain_verifies(installation: Installation, filled: int, verify: Verify,
                               signer: CheckpointSigner) -> None:
    signer.sign(installation.database)
    report = verify()
    assert report.intact, report.problem
    assert report.summary() == f"audit chain intact: {filled} entries checked, 1 checkpoints"


def test_editing_any_field_of_an_entry_is_detected(installation: Installation, filled: int,
                                                   verify: Verify) -> None:
    with installation.database.read() as session:
        original = session.get(AuditEventRow, TAMPERED_SEQ)
        assert original is not None
        values = {column: getattr(original, column) for column in COLUMNS}
    assert '"n":' in values["details"]
    for column in COLUMNS:
        where = AuditEventRow.seq == TAMPERED_SEQ
        _execute(installation, update(AuditEventRow).where(where)
                 .values({column: _other_value(column, values[column])}))
        report = verify()
        assert not report.intact, f"editing {column} went unnoticed"
        assert report.failed_seq == TAMPERED_SEQ, (column, report.problem)
        expected = ("does not link" if column == "prev_hash" else "was altered")
        assert report.problem is not None
        assert report.problem.startswith(f"entry {TAMPERED_SEQ} {expected}"), report.problem
        _execute(installation, update(AuditEventRow).where(where)
                 .values({column: values[column]}))
        assert verify().intact, f"restoring {column} did not restore the chain"


def test_deleting_a_middle_entry_is_detected(installation: Installation, filled: int,
                                             verify: Verify) -> None:
    _execute(installation, delete(AuditEventRow).where(AuditEventRow.seq == 7))
    report = verify()
    assert report.failed_seq == 7
    assert report.problem == "entry 7 is missing (next stored entry is 8)"


def test_cutting_the_tail_is_detected_by_the_head_row(installation: Installation, filled: int,
                                                      verify: Verify) -> None:
    _execute(installation, delete(AuditEventRow).where(AuditEventRow.seq > filled - 2))
    report = verify()
    assert report.problem == (f"chain ends at {filled - 2} but the head row records entry "
                              f"{filled}: the tail was cut")


def test_cutting_the_tail_and_moving_the_head_is_detected_by_a_checkpoint(
        installation: Installation, filled: int, verify: Verify,
        signer: CheckpointSigner) -> None:
    made = signer.sign(installation.database)
    with installation.database.read() as session:
        row = session.get(AuditEventRow, filled - 3)
        assert row is not None
        new_head = row.entry_hash
    _execute(installation, delete(AuditEventRow).where(AuditEventRow.seq > filled - 3))
    _execute(installation, update(AuditHeadRow).values(seq=filled - 3, entry_hash=new_head))
    report = verify()
    assert report.problem == (f"chain ends at {filled - 3} but checkpoint {made.id} signed "
                              f"entry {filled}: the tail was cut")


def test_swapping_two_entries_is_detected(installation: Installation, filled: int,
                                          verify: Verify) -> None:
    _execute(installation, update(AuditEventRow).where(AuditEventRow.seq == 5).values(seq=-5))
    _execute(installation, update(AuditEventRow).where(AuditEventRow.seq == 12).values(seq=5))
    _execute(installation, update(AuditEventRow).where(AuditEventRow.seq == -5).values(seq=12))
    report = verify()
    assert report.failed_seq == 5
    assert report.problem is not None and "entry 5 does not link to entry 4" in report.problem


def test_rewriting_the_chain_consistently_is_caught_by_the_checkpoint(
        installation: Installation, filled: int, verify: Verify,
        signer: CheckpointSigner) -> None:
    """Someone with database access recomputes every hash after an edit: only the signature
    over an earlier head can show it."""
    made = signer.sign(installation.database)
    with installation.database.write() as session:
        rows = session.execute(select(AuditEventRow).where(AuditEventRow.seq >= 8)
                               .order_by(AuditEventRow.seq)).scalars().all()
        previous = session.get(AuditEventRow, 7)
        assert previous is not None
        prev_hash = previous.entry_hash
        entries = [entry_from_row(row) for row in rows]
        session.execute(delete(AuditEventRow).where(AuditEventRow.seq >= 8))
        session.flush()
        for entry in entries:
            event = AuditEvent(entry.event_type, entry.actor, entry.outcome,
                               "mallory" if entry.seq == 8 else entry.user, entry.vm,
                               entry.serial, entry.source, entry.session_id, entry.details)
            forged = link(event, seq=entry.seq, ts=entry.ts, prev_hash=prev_hash)
            session.add(AuditEventRow(
                seq=forged.seq, ts=forged.ts, event_type=forged.event_type, actor=forged.actor,
                outcome=forged.outcome, user_name=forged.user, vm=forged.vm,
                serial=forged.serial, source=forged.source, session_id=forged.session_id,
                details=forged.details_json, prev_hash=forged.prev_hash,
                entry_hash=forged.entry_hash))
            prev_hash = forged.entry_hash
        head = session.get(AuditHeadRow, 1)
        assert head is not None
        head.entry_hash = prev_hash
    report = verify()
    assert report.failed_seq == filled
    assert report.problem == (f"entry {filled} does not match checkpoint {made.id}: the chain "
                              f"was rewritten at or before entry {filled} after it was signed")


def test_a_forged_checkpoint_is_rejected(installation: Installation, filled: int,
                                         verify: Verify, signer: CheckpointSigner) -> None:
    made = signer.sign(installation.database)
    _execute(installation, update(AuditCheckpointRow).where(AuditCheckpointRow.id == made.id)
             .values(seq=filled + 100))
    report = verify()
    assert report.problem == (f"checkpoint {made.id} has an invalid signature (the checkpoint "
                              "row was altered or forged)")
