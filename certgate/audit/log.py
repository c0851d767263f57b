"""Appending audit events to the chain stored in the database.

An append locks the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; the
``BEGIN IMMEDIATE`` of a write unit on SQLite), so any number of writers — the CLI, several
gateways on one PostgreSQL — extend one chain and never fork it. Appending inside the caller's
write transaction makes "the certificate was issued" and "its audit event exists" one atomic
fact: either both are committed or neither is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from certgate.audit.chain import AuditEvent, ChainEntry, format_ts, link
from certgate.errors import AuditError, CertgateError
from certgate.store.database import Database
from certgate.store.prepared import PreparedStatement, connection_of
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


_EVENT_COLUMNS = ("seq", "ts", "event_type", "actor", "outcome", "user_name", "vm", "serial",
                  "source", "session_id", "details", "prev_hash", "entry_hash")
_HEAD = AuditHeadRow.__table__.c
# Built once and run straight on the driver (certgate.store.prepared): every admin write and
# every audited decision runs these, and SQLAlchemy's per-statement machinery cost more than
# SQLite spent running them.
_INSERT = PreparedStatement(insert(AuditEventRow.__table__),  # type: ignore[arg-type]
                            parameters=_EVENT_COLUMNS)
_LOCK_HEAD = PreparedStatement(
    select(_HEAD.seq, _HEAD.entry_hash, _HEAD.base_seq, _HEAD.base_hash)
    .where(_HEAD.id == 1).with_for_update())
_MOVE_HEAD_FROM = PreparedStatement(
    update(AuditHeadRow.__table__)  # type: ignore[arg-type]
    .where(_HEAD.id == 1, _HEAD.seq == bindparam("old_seq"),
           _HEAD.entry_hash == bindparam("old_hash"))
    .values(seq=bindparam("seq"), entry_hash=bindparam("entry_hash"))
)
_UPDATE_HEAD = PreparedStatement(
    update(AuditHeadRow.__table__)  # type: ignore[arg-type]
    .where(_HEAD.id == 1)
    .values(seq=bindparam("seq"), entry_hash=bindparam("entry_hash"))
)
_SET_BASE = PreparedStatement(
    update(AuditHeadRow.__table__)  # type: ignore[arg-type]
    .where(_HEAD.id == 1)
    .values(base_seq=bindparam("base_seq"), base_hash=bindparam("base_hash"))
)

HEAD_KEY = "certgate_audit_head"
_GUESS_KEY = "certgate_audit_head_guess"


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
    rows = _LOCK_HEAD.rows(session)
    if not rows:
        raise AuditError("the audit chain has no head row: the database was not initialised")
    head = LockedHead(*rows[0])
    session.info[HEAD_KEY] = (transaction, head)
    return head


def lock_head_for_admin(session: Session) -> None:
    """Serialise an admin write with every other writer before it reads anything.

    On PostgreSQL that is the head's row lock (``SELECT ... FOR UPDATE``). On SQLite the write
    unit's ``BEGIN IMMEDIATE`` already holds the database's only write lock, so beginning the
    transaction is enough; the append then checks its guess of the head in the UPDATE that
    moves it, which saves reading the head on the ``attr grant`` path.
    """
    if connection_of(session).dialect.name != "sqlite":
        lock_head(session)


def set_base(session: Session, base_seq: int, base_hash: str) -> None:
    """Move where the retained chain starts (pruning), under the head lock."""
    head = lock_head(session)
    _SET_BASE.execute(session, {"base_seq": base_seq, "base_hash": base_hash})
    head.base_seq, head.base_hash = base_seq, base_hash


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
        info = connection_of(session).info
        guess = info.get(_GUESS_KEY)
        if guess is not None:
            entries = _link_all(events, *guess)
            moved = _MOVE_HEAD_FROM.execute(session, {
                "old_seq": guess[0], "old_hash": guess[1],
                "seq": entries[-1].seq, "entry_hash": entries[-1].entry_hash,
            })
            if moved == 1:
                _insert(session, entries)
                info[_GUESS_KEY] = (entries[-1].seq, entries[-1].entry_hash)
                return entries
    head = lock_head(session)
    if not events:
        return []
    entries = _link_all(events, head.seq, head.entry_hash)
    seq, entry_hash = entries[-1].seq, entries[-1].entry_hash
    _insert(session, entries)
    _UPDATE_HEAD.execute(session, {"seq": seq, "entry_hash": entry_hash})
    head.seq, head.entry_hash = seq, entry_hash
    connection_of(session).info[_GUESS_KEY] = (seq, entry_hash)
    return entries


def _insert(session: Session, entries: list[ChainEntry]) -> None:
    """One executemany; the entries of one append share one timestamp, converted once."""
    _INSERT.execute_many(session, [
        {"seq": e.seq, "ts": e.ts, "event_type": e.event_type, "actor": e.actor,
         "outcome": e.outcome, "user_name": e.user, "vm": e.vm, "serial": e.serial,
         "source": e.source, "session_id": e.session_id, "details": e.details_json,
         "prev_hash": e.prev_hash, "entry_hash": e.entry_hash}
        for e in entries
    ])


def _link_all(events: Sequence[AuditEvent], seq: int, prev_hash: str) -> list[ChainEntry]:
    now = datetime.now(UTC)
    now_text = format_ts(now)
    entries: list[ChainEntry] = []
    for event in events:
        seq += 1
        entry = link(event, seq=seq, ts=now, prev_hash=prev_hash, ts_text=now_text)
        entries.append(entry)
        prev_hash = entry.entry_hash
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

    def record_many(self, events: Sequence[AuditEvent], *,
                    before: Sequence[Callable[[Session], None]] = ()) -> list[ChainEntry]:
        """Append several events in one transaction (one commit, one fsync).

        ``before`` runs in the same transaction first (e.g. inserting the session row that
        ``session.start`` describes), so the rows and the events are committed together."""
        try:
            with self.database.write() as session:
                for statement in before:
                    statement(session)
                return append_in(session, events)
        except AuditError:
            raise
        except (CertgateError, SQLAlchemyError, OSError) as exc:
            raise AuditError(f"cannot write the audit log: {exc}") from exc

    def entries(self, *, after_seq: int = 0, batch: int = 1000) -> Iterator[ChainEntry]:
        """Stream entries in chain order, a batch per read transaction."""
        return stream_entries(self.database, after_seq=after_seq, batch=batch)
