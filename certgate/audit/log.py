"""Appending audit events to the chain stored in the database.

An append locks the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; the
``BEGIN IMMEDIATE`` of a write unit on SQLite), so any number of writers — the CLI, several
gateways on one PostgreSQL — extend one chain and never fork it. Appending inside the caller's
write transaction makes "the certificate was issued" and "its audit event exists" one atomic
fact: either both are committed or neither is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from certgate.audit.appending import INSERT_EVENTS, NO_HEAD, event_rows, link_all
from certgate.audit.appending import AuditLog as AuditLog  # its home before; kept importable
from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.errors import AuditError
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow, AuditHeadRow
from certgate.store.sql import for_driver


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
_GUESS_KEY = "certgate_audit_head_guess"
_HEAD = AuditHeadRow.__table__.c
_MOVE_HEAD_FROM = (
    update(AuditHeadRow.__table__)  # type: ignore[arg-type]
    .where(_HEAD.id == 1, _HEAD.seq == bindparam("old_seq"),
           _HEAD.entry_hash == bindparam("old_hash"))
    .values(seq=bindparam("seq"), entry_hash=bindparam("entry_hash"))
)
_UPDATE_HEAD = (
    update(AuditHeadRow.__table__)  # type: ignore[arg-type]
    .where(AuditHeadRow.__table__.c.id == 1)
    .values(seq=bindparam("seq"), entry_hash=bindparam("entry_hash"))
)


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


# Built once: every admin write takes this lock, and building the SELECT cost more than it.
_LOCK_HEAD = select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()


def lock_head(session: Session) -> AuditHeadRow:
    """Lock the chain head for this transaction (once: later calls reuse the locked row)."""
    transaction = session.get_transaction()
    locked = session.info.get(HEAD_KEY)
    if locked is not None and transaction is not None and locked[0] is transaction:
        head_row: AuditHeadRow = locked[1]
        return head_row
    head = session.execute(_LOCK_HEAD).scalar_one_or_none()
    if head is None:
        raise AuditError(NO_HEAD)
    session.info[HEAD_KEY] = (transaction, head)
    return head


def append_in(session: Session, events: Sequence[AuditEvent]) -> list[ChainEntry]:
    """Append events inside an open write transaction; they commit (or vanish) with it.

    Rows go in as one executemany INSERT rather than ORM objects: building and flushing ORM
    instances cost more than hashing and committing together (see docs/audit.md).

    The head is usually where this connection's last append left it, so the events are linked
    to that guess first and the head is moved with ``UPDATE ... WHERE seq = guess AND
    entry_hash = guess``: when it matches, that one statement both checks and locks the head
    (one round trip instead of a ``SELECT ... FOR UPDATE`` and an ``UPDATE``). When another
    writer moved the head in between, nothing matched and the append starts again from the
    locked head, so the chain never forks either way.
    """
    transaction = session.get_transaction()
    locked = session.info.get(HEAD_KEY)
    if events and not (locked is not None and locked[0] is transaction):
        connection = session.connection()
        guess = connection.info.get(_GUESS_KEY)
        if guess is not None:
            entries = link_all(events, *guess)
            moved = connection.execute(_MOVE_HEAD_FROM, {
                "old_seq": guess[0], "old_hash": guess[1],
                "seq": entries[-1].seq, "entry_hash": entries[-1].entry_hash,
            })
            if moved.rowcount == 1:
                _insert(connection, entries)
                connection.info[_GUESS_KEY] = (entries[-1].seq, entries[-1].entry_hash)
                return entries
    head = lock_head(session)
    if not events:
        return []
    entries = link_all(events, head.seq, head.entry_hash)
    seq, entry_hash = entries[-1].seq, entries[-1].entry_hash
    connection = session.connection()
    _insert(connection, entries)
    # Core UPDATE, and the locked ORM row told the new values: an ORM flush of the one head
    # row cost more than hashing a 100-event batch.
    connection.execute(_UPDATE_HEAD, {"seq": seq, "entry_hash": entry_hash})
    set_committed_value(head, "seq", seq)
    set_committed_value(head, "entry_hash", entry_hash)
    connection.info[_GUESS_KEY] = (seq, entry_hash)
    return entries


def _insert(connection: Connection, entries: list[ChainEntry]) -> None:
    """One executemany of plain tuples straight to the driver (``INSERT_EVENTS``, shared with
    ``certgate.audit.appending.append_with``).

    The entries of one append share one timestamp, so its column conversion runs once, not
    once per row as SQLAlchemy's per-row bind processing would (a third of an append's CPU).
    """
    if any(entry.ts is not entries[0].ts for entry in entries):
        connection.execute(_INSERT, [_row_values(e) for e in entries])
        return
    dialect = connection.dialect.name
    connection.exec_driver_sql(for_driver(INSERT_EVENTS, dialect), event_rows(entries, dialect))


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
