"""Appending audit events to the chain stored in the database.

An append locks the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; the
``BEGIN IMMEDIATE`` of a write unit on SQLite), so any number of writers — the CLI, several
gateways on one PostgreSQL — extend one chain and never fork it. Appending inside the caller's
write transaction makes "the certificate was issued" and "its audit event exists" one atomic
fact: either both are committed or neither is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from certgate.audit.appending import INSERT_EVENTS, MOVE_HEAD, NO_HEAD, event_rows, link_all
from certgate.audit.appending import AuditLog as AuditLog  # its home before; kept importable
from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.errors import AuditError
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow
from certgate.store.session_sql import SessionSQL, session_connection
from certgate.store.sql import POSTGRESQL, SQLITE


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


# The head statements of an append inside a larger transaction, run on the session's driver
# connection (certgate.store.session_sql): every admin write and audited decision runs them.
_LOCK_HEAD = "SELECT seq, entry_hash, base_seq, base_hash FROM audit_head WHERE id = 1"
_MOVE_HEAD_FROM = ("UPDATE audit_head SET seq = ?, entry_hash = ? "
                   "WHERE id = 1 AND seq = ? AND entry_hash = ?")
_SET_BASE = "UPDATE audit_head SET base_seq = ?, base_hash = ? WHERE id = 1"
_GUESS_KEY = "certgate_audit_head_guess"
HEAD_KEY = "certgate_audit_head"


@dataclass
class LockedHead:
    """The chain head as this transaction locked it; ``append_in`` keeps it current."""

    seq: int
    entry_hash: str
    base_seq: int
    base_hash: str


def lock_head(session: Session) -> LockedHead:
    """Lock the chain head for this transaction (once: later calls reuse the locked head)."""
    transaction = session.get_transaction()
    locked = session.info.get(HEAD_KEY)
    if locked is not None and transaction is not None and locked[0] is transaction:
        head: LockedHead = locked[1]
        return head
    sql = SessionSQL(session)
    rows = sql.rows(_LOCK_HEAD + (" FOR UPDATE" if sql.dialect == POSTGRESQL else ""))
    if not rows:
        raise AuditError(NO_HEAD)
    seq, entry_hash, base_seq, base_hash = rows[0]
    head = LockedHead(int(seq), entry_hash, int(base_seq), base_hash)
    session.info[HEAD_KEY] = (transaction, head)
    return head


def lock_head_for_admin(session: Session) -> None:
    """Serialise an admin write with every other writer before it reads anything.

    On PostgreSQL that is the head's row lock (``SELECT ... FOR UPDATE``). On SQLite the write
    unit's ``BEGIN IMMEDIATE`` already holds the database's only write lock, so beginning the
    transaction is enough; the append then checks its guess of the head in the UPDATE that
    moves it, which saves reading the head on the ``attr grant`` path.
    """
    if session_connection(session).dialect.name != SQLITE:
        lock_head(session)


def set_base(session: Session, base_seq: int, base_hash: str) -> None:
    """Move where the retained chain starts (pruning), under the head lock."""
    head = lock_head(session)
    SessionSQL(session).run(_SET_BASE, (base_seq, base_hash))
    head.base_seq, head.base_hash = base_seq, base_hash


def append_in(session: Session, events: Sequence[AuditEvent]) -> list[ChainEntry]:
    """Append events inside an open write transaction; they commit (or vanish) with it.

    Rows go in as one executemany INSERT rather than ORM objects: building and flushing ORM
    instances cost more than hashing and committing together (see docs/audit.md).

    The head is usually where this connection's last append left it, so the events are linked
    to that guess first and the head is moved with ``UPDATE ... WHERE seq = guess AND
    entry_hash = guess``: when it matches, that one statement both checks and locks the head
    (one round trip instead of a ``SELECT ... FOR UPDATE`` and an ``UPDATE``). When another
    writer moved the head in between, or the transaction that made the guess was rolled back,
    nothing matched and the append starts again from the locked head, so the chain never
    forks either way.
    """
    sql = SessionSQL(session)
    transaction = session.get_transaction()
    locked = session.info.get(HEAD_KEY)
    if events and not (locked is not None and locked[0] is transaction):
        info = session_connection(session).info
        guess = info.get(_GUESS_KEY)
        if guess is not None:
            entries = link_all(events, *guess)
            if sql.run(_MOVE_HEAD_FROM, (entries[-1].seq, entries[-1].entry_hash, *guess)) == 1:
                sql.run_many(INSERT_EVENTS, event_rows(entries, sql.dialect))
                info[_GUESS_KEY] = (entries[-1].seq, entries[-1].entry_hash)
                return entries
    head = lock_head(session)
    if not events:
        return []
    entries = link_all(events, head.seq, head.entry_hash)
    seq, entry_hash = entries[-1].seq, entries[-1].entry_hash
    sql.run_many(INSERT_EVENTS, event_rows(entries, sql.dialect))
    sql.run(MOVE_HEAD, (seq, entry_hash))
    head.seq, head.entry_hash = seq, entry_hash
    session_connection(session).info[_GUESS_KEY] = (seq, entry_hash)
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
