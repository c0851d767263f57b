"""Appending audit events to the chain stored in the database.

An append locks the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; the
``BEGIN IMMEDIATE`` of a write unit on SQLite), so any number of writers — the CLI, several
gateways on one PostgreSQL — extend one chain and never fork it. Appending inside the caller's
write transaction makes "the certificate was issued" and "its audit event exists" one atomic
fact: either both are committed or neither is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from certgate.audit.chain import AuditEvent, ChainEntry, link
from certgate.errors import AuditError, CertgateError
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow, AuditHeadRow


def entry_from_row(row: AuditEventRow) -> ChainEntry:
    return ChainEntry(
        seq=row.seq,
        ts=row.ts,
        event_type=row.event_type,
        actor=row.actor,
        outcome=row.outcome,
        user=row.user_name,
        vm=row.vm,
        serial=row.serial,
        source=row.source,
        session_id=row.session_id,
        details_json=row.details,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


_INSERT = insert(AuditEventRow.__table__)  # type: ignore[arg-type]


def _row_values(entry: ChainEntry) -> dict[str, object]:
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "event_type": entry.event_type,
        "actor": entry.actor,
        "outcome": entry.outcome,
        "user_name": entry.user,
        "vm": entry.vm,
        "serial": entry.serial,
        "source": entry.source,
        "session_id": entry.session_id,
        "details": entry.details_json,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


HEAD_KEY = "certgate_audit_head"


def lock_head(session: Session) -> AuditHeadRow:
    """Lock the chain head for this transaction (once: later calls reuse the locked row)."""
    transaction = session.get_transaction()
    locked = session.info.get(HEAD_KEY)
    if locked is not None and transaction is not None and locked[0] is transaction:
        head_row: AuditHeadRow = locked[1]
        return head_row
    head = session.execute(
        select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        raise AuditError("the audit chain has no head row: the database was not initialised")
    session.info[HEAD_KEY] = (transaction, head)
    return head


def append_in(session: Session, events: Sequence[AuditEvent]) -> list[ChainEntry]:
    """Append events inside an open write transaction; they commit (or vanish) with it.

    Rows go in as one executemany INSERT rather than ORM objects: building and flushing ORM
    instances cost more than hashing and committing together (see docs/audit.md).
    """
    head = lock_head(session)
    entries: list[ChainEntry] = []
    seq, prev_hash = head.seq, head.entry_hash
    now = datetime.now(UTC)
    for event in events:
        seq += 1
        entry = link(event, seq=seq, ts=now, prev_hash=prev_hash)
        entries.append(entry)
        prev_hash = entry.entry_hash
    if entries:
        session.connection().execute(_INSERT, [_row_values(e) for e in entries])
    head.seq, head.entry_hash = seq, prev_hash
    session.flush()
    return entries


def stream_entries(
    database: Database,
    *,
    after_seq: int = 0,
    up_to_seq: int | None = None,
    query: Select[Any] | None = None,
    batch: int = 1000,
) -> Iterator[ChainEntry]:
    """Entries in seq order (optionally filtered by ``query``), a batch per read transaction.

    Short transactions keep a long walk (verify, export) from holding a snapshot or blocking
    writers, and memory stays flat however long the chain is.
    """
    base = query if query is not None else select(AuditEventRow)
    last = after_seq
    while up_to_seq is None or last < up_to_seq:
        statement = base.where(AuditEventRow.seq > last)
        if up_to_seq is not None:
            statement = statement.where(AuditEventRow.seq <= up_to_seq)
        with database.read() as session:
            rows = session.execute(
                statement.order_by(AuditEventRow.seq).limit(batch)
            ).scalars().all()
            page = [entry_from_row(row) for row in rows]
        if not page:
            return
        yield from page
        last = page[-1].seq


class AuditLog:
    """The audit log of one installation."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, event: AuditEvent) -> ChainEntry:
        """Append one event in its own transaction; raises AuditError if it is not durable."""
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[AuditEvent]) -> list[ChainEntry]:
        """Append several events in one transaction (one commit, one fsync)."""
        try:
            with self.database.write() as session:
                return append_in(session, events)
        except AuditError:
            raise
        except (CertgateError, SQLAlchemyError, OSError) as exc:
            raise AuditError(f"cannot write the audit log: {exc}") from exc

    def entries(self, *, after_seq: int = 0, batch: int = 1000) -> Iterator[ChainEntry]:
        """Stream entries in chain order, a batch per read transaction."""
        return stream_entries(self.database, after_seq=after_seq, batch=batch)
