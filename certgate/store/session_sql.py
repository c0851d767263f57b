"""``certgate.store.sql.SQL`` inside a SQLAlchemy session's transaction, run on its DB-API cursor.

Why on the cursor: through ``Connection.exec_driver_sql`` each statement cost ~0.1 ms of
SQLAlchemy's execution machinery (execution context, events, result wrapping), several times
what SQLite spends running it; ``attr grant`` runs six per AC. What that machinery did that
matters here is kept: the session's transaction is the one used (``BEGIN IMMEDIATE`` for
write units on SQLite, so locking and atomicity are unchanged), pending ORM changes are
flushed first, and driver errors come back as SQLAlchemy's exception types (so
``Database``'s guard and every caller handle them as before; a dropped PostgreSQL
connection is invalidated). Not kept: ``*_cursor_execute`` events and echo logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from certgate.store.sql import for_driver

_CONNECTION_KEY = "certgate_session_sql_connection"


def session_connection(session: Session) -> Connection:
    """The session's connection in its current transaction, pending ORM changes flushed first
    (as ``session.execute`` would). Asking the session for it cost more than most statements,
    so it is kept for the transaction."""
    if session.autoflush:
        session.flush()  # returns at once when nothing is pending
    transaction = session.get_transaction()
    kept = session.info.get(_CONNECTION_KEY)
    if kept is not None and transaction is not None and kept[0] is transaction:
        connection: Connection = kept[1]
        return connection
    connection = session.connection()
    session.info[_CONNECTION_KEY] = (session.get_transaction(), connection)
    return connection


def run_on_driver(connection: Connection, statement: str, params: Any = (), *,
                  many: bool = False) -> Any:
    """Run ``statement`` (in the driver's parameter style) on ``connection``'s DB-API cursor;
    the open cursor is returned. Driver errors are raised as SQLAlchemy's."""
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise DBAPIError.instance(statement, None, RuntimeError("the connection is closed"),
                                  RuntimeError)
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(statement, params)
        else:
            cursor.execute(statement, params)
    except connection.dialect.loaded_dbapi.Error as exc:
        cursor.close()
        lost = connection.dialect.is_disconnect(exc, raw, cursor)
        if lost:
            connection.invalidate(exc)
        # No parameters in the message: they can hold certificate bytes and user data.
        raise DBAPIError.instance(statement, None, exc, connection.dialect.loaded_dbapi.Error,
                                  hide_parameters=True, connection_invalidated=lost,
                                  dialect=connection.dialect, ismulti=many) from exc
    return cursor


class SessionSQL:
    """``certgate.store.sql.SQL`` over a session's transaction: the statements the access
    core shares with ``policy check`` (which runs them without SQLAlchemy), and the admin
    write path's, run on the session's own DB-API connection."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._dialect = session.get_bind().dialect.name

    @property
    def dialect(self) -> str:
        return self._dialect

    def _cursor(self, statement: str, params: Sequence[Any], many: bool = False) -> Any:
        return run_on_driver(session_connection(self.session),
                             for_driver(statement, self._dialect), params, many=many)

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._cursor(statement, tuple(params))
        try:
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def run(self, statement: str, params: Sequence[Any] = ()) -> int:
        cursor = self._cursor(statement, tuple(params))
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor(statement, [tuple(r) for r in rows], many=True).close()
