"""The store's change counter: one number that moves whenever access may have changed.

Every transaction that revokes, issues, changes an identity, applies a policy or changes a
VM calls ``mark_changed(session)``; when it commits, the counter is bumped once (in the same
transaction) and, on PostgreSQL, ``NOTIFY certgate_changes`` is sent, which PostgreSQL
delivers to listeners only if and when the transaction commits. Gateways re-decide their live
sessions when the counter moves, and at no other time except known time boundaries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from certgate.store.schema import StoreChangesRow

CHANNEL = "certgate_changes"
_FLAG = "certgate_changed"


def mark_changed(session: Session) -> None:
    """Bump the change counter when this transaction commits (once, however often called)."""
    session.info[_FLAG] = True


def _bump(session: Session) -> None:
    if not session.info.pop(_FLAG, False):
        return
    result = session.execute(update(StoreChangesRow).where(StoreChangesRow.id == 1)
                             .values(counter=StoreChangesRow.counter + 1))
    if getattr(result, "rowcount", 1) == 0:  # a schema made without the migration's seed row
        session.add(StoreChangesRow(id=1, counter=1))
        session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def install(factory: sessionmaker[Session]) -> None:
    """Make sessions from ``factory`` bump the counter on commit when marked."""
    event.listen(factory, "before_commit", _bump)


def read_counter(session: Session) -> int:
    value: Any = session.execute(
        select(StoreChangesRow.counter).where(StoreChangesRow.id == 1)).scalar()
    return int(value or 0)
