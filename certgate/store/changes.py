"""The store's change counter: one number that moves whenever access may have changed.

Every transaction that revokes, issues, changes an identity, applies a policy or changes a
VM calls ``mark_changed(session)``; when it commits, the counter is bumped once (in the same
transaction) and, on PostgreSQL, ``NOTIFY certgate_changes`` is sent, which PostgreSQL
delivers to listeners only if and when the transaction commits. Gateways re-decide their live
sessions when the counter moves, and at no other time except known time boundaries.
"""

from __future__ import annotations

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, sessionmaker

from certgate.store import access_reads
from certgate.store.schema import StoreChangesRow
from certgate.store.session_sql import SessionSQL as SessionSQL  # its home before; kept
from certgate.store.sql import POSTGRESQL

CHANNEL = "certgate_changes"
_FLAG = "certgate_changed"


def mark_changed(session: Session) -> None:
    """Bump the change counter when this transaction commits (once, however often called)."""
    session.info[_FLAG] = True


_BUMP = "UPDATE store_changes SET counter = counter + 1 WHERE id = 1"


def _bump(session: Session) -> None:
    if not session.info.pop(_FLAG, False):
        return
    sql = SessionSQL(session)
    if sql.run(_BUMP) == 0:  # a schema made without the migration's seed row
        session.add(StoreChangesRow(id=1, counter=1))
        session.flush()
    if sql.dialect == POSTGRESQL:
        sql.run(f"NOTIFY {CHANNEL}")


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
