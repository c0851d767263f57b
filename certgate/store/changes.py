"""The store's change counter: one number that moves whenever access may have changed.

Every transaction that revokes, issues, changes an identity, applies a policy or changes a
VM calls ``mark_changed(session)``; when it commits, the counter is bumped once (in the same
transaction) and, on PostgreSQL, ``NOTIFY certgate_changes`` is sent, which PostgreSQL
delivers to listeners only if and when the transaction commits. Gateways re-decide their live
sessions when the counter moves, and at no other time except known time boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, event, text, update
from sqlalchemy.orm import Session, sessionmaker

from certgate.store import access_reads
from certgate.store.schema import StoreChangesRow
from certgate.store.sql import for_driver

CHANNEL = "certgate_changes"
_FLAG = "certgate_changed"


def mark_changed(session: Session) -> None:
    """Bump the change counter when this transaction commits (once, however often called)."""
    session.info[_FLAG] = True


def _bump(session: Session) -> None:
    if not session.info.pop(_FLAG, False):
        return
    result = session.connection().execute(_BUMP)
    if getattr(result, "rowcount", 1) == 0:  # a schema made without the migration's seed row
        session.add(StoreChangesRow(id=1, counter=1))
        session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def install(factory: sessionmaker[Session]) -> None:
    """Make sessions from ``factory`` bump the counter on commit when marked."""
    event.listen(factory, "before_commit", _bump)


def flushed_connection(session: Session) -> Connection:
    """The session's connection, with pending ORM changes flushed first (what
    ``session.execute`` does): for the Core reads built once, which skip the ORM."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection()


def read_counter(session: Session) -> int:
    return access_reads.change_counter(SessionSQL(session))


class SessionSQL:
    """``certgate.store.sql.SQL`` over a session's transaction: the statements the access
    core shares with ``policy check`` (which runs them without SQLAlchemy), run here through
    SQLAlchemy's connection, its events and its error handling."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._dialect = session.get_bind().dialect.name

    @property
    def dialect(self) -> str:
        return self._dialect

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result = flushed_connection(self.session).exec_driver_sql(
            for_driver(statement, self._dialect), tuple(params))
        return [tuple(row) for row in result]

    def run(self, statement: str, params: Sequence[Any] = ()) -> int:
        result = flushed_connection(self.session).exec_driver_sql(
            for_driver(statement, self._dialect), tuple(params))
        return int(result.rowcount)

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        flushed_connection(self.session).exec_driver_sql(
            for_driver(statement, self._dialect), [tuple(r) for r in rows])


# Built once: every decision reads the counter and every write bumps it.
_TABLE = StoreChangesRow.__table__
_BUMP = update(_TABLE).where(_TABLE.c.id == 1).values(  # type: ignore[arg-type]
    counter=_TABLE.c.counter + 1)
