"""Pruning old audit entries without losing the ability to verify what remains.

The retained chain starts after (base_seq, base_hash) in the head row. Pruning moves that base
forward, deletes the entries up to it and records an ``audit.prune`` event naming the new base
in the same transaction, so the base itself is covered by the chain (and by the checkpoint
signed right after). A prune refuses to run on a chain that does not verify: deleting the
evidence of tampering must not be a way to make the chain "intact" again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select

from certgate.audit.chain import AuditEvent
from certgate.audit.checkpoints import CheckpointSigner, CheckpointVerifier
from certgate.audit.log import append_in, lock_head, set_base
from certgate.audit.verification import PRUNE_EVENT, verify_chain
from certgate.errors import AuditError
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow, ConsoleSessionRow


@dataclass(frozen=True)
class PruneResult:
    removed: int
    base_seq: int
    held_back_by_live_session: bool
    checkpoint_id: int


def prune_before(
    database: Database,
    before: datetime,
    *,
    signer: CheckpointSigner,
    verifier: CheckpointVerifier,
    actor: str,
) -> PruneResult:
    """Delete the chain's prefix older than ``before``; entries from the start event of a
    session that is still live onwards are kept, so a live session is never half-forgotten."""
    report = verify_chain(database, verifier)
    if not report.intact:
        raise AuditError(f"refusing to prune a chain that does not verify: {report.problem}")
    before_checkpoint = signer.sign(database)
    with database.write() as session:
        head = lock_head(session)
        old_base = head.base_seq
        last_old = session.execute(
            select(func.max(AuditEventRow.seq)).where(
                AuditEventRow.seq > old_base, AuditEventRow.ts < before)
        ).scalar_one_or_none()
        target = last_old or old_base
        first_live = session.execute(
            select(func.min(AuditEventRow.seq)).where(
                AuditEventRow.seq > old_base,
                AuditEventRow.session_id.in_(
                    select(ConsoleSessionRow.id).where(ConsoleSessionRow.status == "live")),
            )
        ).scalar_one_or_none()
        held_back = first_live is not None and first_live <= target
        if first_live is not None:
            target = min(target, first_live - 1)
        if target <= old_base:
            return PruneResult(0, old_base, held_back, before_checkpoint.id)
        base_hash = session.execute(
            select(AuditEventRow.entry_hash).where(AuditEventRow.seq == target)
        ).scalar_one()
        deleted = session.execute(delete(AuditEventRow).where(AuditEventRow.seq <= target))
        removed = cast(CursorResult[Any], deleted).rowcount
        set_base(session, target, base_hash)
        append_in(session, [AuditEvent(
            PRUNE_EVENT, actor, outcome="ok",
            details={"before": before.isoformat(), "base_seq": target, "base_hash": base_hash,
                     "previous_base_seq": old_base, "removed": removed,
                     "checkpoint": before_checkpoint.id, "held_back_by_live_session": held_back},
        )])
    after = signer.sign(database)
    return PruneResult(removed, target, held_back, after.id)
