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

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from certgate.store.sql import CursorSQL

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


class _DriverCursorSQL(CursorSQL):
    """``certgate.store.sql.SQL`` on the DB-API cursor of a SQLAlchemy connection."""

    def _connection(self) -> Connection:
        raise NotImplementedError

    def _cursor(self, statement: str, params: Any, many: bool = False) -> Any:
        return run_on_driver(self._connection(), statement, params, many=many)


class SessionSQL(_DriverCursorSQL):
    """``certgate.store.sql.SQL`` over a session's transaction: the statements the access
    core shares with ``policy check`` (which runs them without SQLAlchemy), and the admin
    write path's, run on the session's own DB-API connection."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._dialect = session.get_bind().dialect.name

    def _connection(self) -> Connection:
        return session_connection(self.session)


class ConnectionSQL(_DriverCursorSQL):
    """``certgate.store.sql.SQL`` over a Core connection's transaction, no ORM session: the
    write unit of ``attr grant`` (``Database.write_sql``).

    Why not a session: opening and closing one, and asking it for its connection, cost more
    per grant than SQLite's COMMIT. ``info`` lives for this transaction (the audit head it
    locked); ``connection.info`` for the pooled connection (the audit head guess).
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._dialect = connection.dialect.name
        self.info: dict[str, Any] = {}
        self.changed = False

    def _connection(self) -> Connection:
        return self.connection

    def mark_changed(self) -> None:
        """Bump the change counter when this transaction commits (``Database.write_sql``)."""
        self.changed = True
