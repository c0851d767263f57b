"""Appending to the audit chain with plain SQL, and ``AuditLog``, the installation's audit log.

Nothing here imports SQLAlchemy (see ``certgate.store.sql``): ``certgate policy check``
records its ``policy.check`` event through ``AuditLog.record`` like every other command, on a
store opened with the driver alone, where the append is ``append_with``. On a store opened
with SQLAlchemy the append is ``certgate.audit.log.append_in``, inside the session. Both link
entries with ``link_all`` and write them with ``INSERT_EVENTS``/``event_rows``; they differ
only in how the head row is locked and moved (``append_in`` first tries the head it last
wrote), and a test appends through both and verifies one chain.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from certgate.audit.chain import AuditEvent, ChainEntry, format_ts, link
from certgate.errors import AuditError, CertgateError
from certgate.store.sql import POSTGRESQL, SQL, SQLDatabase, time_param

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from certgate.store.database import Database

EVENT_COLUMNS = ("seq", "ts", "event_type", "actor", "outcome", "user_name", "vm", "serial",
                 "source", "session_id", "details", "prev_hash", "entry_hash")
INSERT_EVENTS = (f"INSERT INTO audit_events ({', '.join(EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join(['?'] * len(EVENT_COLUMNS))})")
"""One row per entry (``?`` placeholders: see ``certgate.store.sql.for_driver``)."""

_LOCK_HEAD = "SELECT seq, entry_hash FROM audit_head WHERE id = 1"
MOVE_HEAD = "UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1"
NO_HEAD = "the audit chain has no head row: the database was not initialised"


def link_all(events: Sequence[AuditEvent], seq: int, prev_hash: str) -> list[ChainEntry]:
    """The entries that follow (``seq``, ``prev_hash``), sharing one timestamp."""
    now = datetime.now(UTC)
    now_text = format_ts(now)
    entries: list[ChainEntry] = []
    for event in events:
        seq += 1
        entry = link(event, seq=seq, ts=now, prev_hash=prev_hash, ts_text=now_text)
        entries.append(entry)
        prev_hash = entry.entry_hash
    return entries


def event_rows(entries: Sequence[ChainEntry], dialect: str) -> list[tuple[Any, ...]]:
    """``INSERT_EVENTS`` parameters for entries that share one timestamp (``link_all``):
    its column conversion runs once per append, not once per row."""
    ts = time_param(entries[0].ts, dialect)
    return [(e.seq, ts, e.event_type, e.actor, e.outcome, e.user, e.vm, e.serial, e.source,
             e.session_id, e.details_json, e.prev_hash, e.entry_hash) for e in entries]


def append_with(sql: SQL, events: Sequence[AuditEvent]) -> list[ChainEntry]:
    """Append events in ``sql``'s write transaction; they commit (or vanish) with it.

    The head row is locked first (``FOR UPDATE`` on PostgreSQL; on SQLite the write
    transaction's ``BEGIN IMMEDIATE`` already holds the database), so concurrent writers
    extend one chain and never fork it.
    """
    lock = _LOCK_HEAD + (" FOR UPDATE" if sql.dialect == POSTGRESQL else "")
    head = sql.rows(lock)
    if not head:
        raise AuditError(NO_HEAD)
    if not events:
        return []
    entries = link_all(events, int(head[0][0]), head[0][1])
    sql.run_many(INSERT_EVENTS, event_rows(entries, sql.dialect))
    sql.run(MOVE_HEAD, (entries[-1].seq, entries[-1].entry_hash))
    return entries


def _driver_errors() -> tuple[type[BaseException], ...]:
    """The DB-API error classes of the drivers already loaded (none is imported for this)."""
    found: list[type[BaseException]] = []
    for module in ("sqlite3", "psycopg", "sqlalchemy.exc"):
        loaded = sys.modules.get(module)
        if loaded is not None:
            found.append(loaded.SQLAlchemyError if module == "sqlalchemy.exc"
                         else loaded.Error)
    return tuple(found)


def _sqlalchemy_database(database: SQLDatabase) -> Database | None:
    """``database`` if it is SQLAlchemy's ``Database`` (whose module, and SQLAlchemy, are then
    loaded already: asking imports nothing)."""
    module = sys.modules.get("certgate.store.database")
    if module is not None and isinstance(database, module.Database):
        return cast("Database", database)
    return None


class AuditLog:
    """The audit log of one installation: appends through SQLAlchemy's session when the
    store was opened with it (``append_in``), else with ``append_with``."""

    def __init__(self, database: SQLDatabase) -> None:
        self.database = database

    def record(self, event: AuditEvent) -> ChainEntry:
        """Append one event in its own transaction; raises AuditError if it is not durable."""
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[AuditEvent], *,
                    before: Sequence[Callable[[Session], None]] = ()) -> list[ChainEntry]:
        """Append several events in one transaction (one commit, one fsync).

        ``before`` runs in the same transaction first (e.g. inserting the session row that
        ``session.start`` describes), so the rows and the events are committed together;
        it needs a SQLAlchemy ``Database``."""
        try:
            orm = _sqlalchemy_database(self.database)
            if orm is not None:
                # Through the session, as every append inside an ORM transaction: the
                # group-commit writer keeps ``append_in``'s one-statement head check.
                from certgate.audit.log import append_in

                with orm.write() as session:
                    for statement in before:
                        statement(session)
                    return append_in(session, events)
            if before:
                raise TypeError("statements before an append need a SQLAlchemy Database")
            with self.database.write_sql() as sql:
                return append_with(sql, events)
        except AuditError:
            raise
        except (CertgateError, OSError) as exc:
            raise AuditError(f"cannot write the audit log: {exc}") from exc
        except Exception as exc:
            if isinstance(exc, _driver_errors()):
                raise AuditError(f"cannot write the audit log: {exc}") from exc
            raise

    def entries(self, *, after_seq: int = 0, batch: int = 1000) -> Iterator[ChainEntry]:
        """Stream entries in chain order, a batch per read transaction."""
        from certgate.audit.log import stream_entries

        orm = _sqlalchemy_database(self.database)
        if orm is None:
            raise TypeError("reading the chain needs a SQLAlchemy Database")
        return stream_entries(orm, after_seq=after_seq, batch=batch)
