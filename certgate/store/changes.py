"""The store's change counter: one number that moves whenever access may have changed.

Every transaction that revokes, issues, changes an identity, applies a policy or changes a
VM calls ``mark_changed(session)``; when it commits, the counter is bumped once (in the same
transaction) and, on PostgreSQL, ``NOTIFY certgate_changes`` is sent, which PostgreSQL
delivers to listeners only if and when the transaction commits. Gateways re-decide their live
sessions when the counter moves, and at no other time except known time boundaries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, event, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from certgate.store.prepared import PreparedStatement
from certgate.store.schema import StoreChangesRow

CHANNEL = "certgate_changes"
_FLAG = "certgate_changed"


def mark_changed(session: Session) -> None:
    """Bump the change counter when this transaction commits (once, however often called)."""
    session.info[_FLAG] = True


def _bump(session: Session) -> None:
    if not session.info.pop(_FLAG, False):
        return
    if _BUMP.execute(session) == 0:  # a schema made without the migration's seed row
        session.add(StoreChangesRow(id=1, counter=1))
        session.flush()
    if session.get_bind().dialect.name == "postgresql":
        _NOTIFY.execute(session)


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
    rows = _READ.rows(session)
    value: Any = rows[0][0] if rows else None
    return int(value or 0)


# Built once and run on the driver (certgate.store.prepared): every decision reads the counter
# and every access-changing write bumps it.
_TABLE = StoreChangesRow.__table__
_BUMP = PreparedStatement(update(_TABLE).where(_TABLE.c.id == 1).values(  # type: ignore[arg-type]
    counter=_TABLE.c.counter + 1))
_READ = PreparedStatement(select(_TABLE.c.counter).where(_TABLE.c.id == 1))
_NOTIFY = PreparedStatement(text(f"NOTIFY {CHANNEL}"))
