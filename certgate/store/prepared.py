"""Core statements compiled once per dialect and run straight on the transaction's DBAPI cursor.

Why: on the admin write path (``attr grant``, one AC per transaction) each statement cost
~0.15 ms in SQLAlchemy's execution machinery (execution context, events, result wrapping),
several times what SQLite spends running it. A ``PreparedStatement`` keeps what that machinery
does that matters here: the SQL and its parameter order come from SQLAlchemy's compiler for
the connection's dialect, values go through each column type's own bind and result
processors (UTC datetimes, JSON, psycopg's JSON wrapper), pending ORM changes are flushed
first, and driver errors come back as SQLAlchemy's exception types (a dropped PostgreSQL
connection is invalidated as ``Connection.execute`` would). What it skips: ``*_execute``
events and echo logging.

Statements are run inside the session's transaction: ``session.connection()`` begins it
(``BEGIN IMMEDIATE`` for write units on SQLite), so locking and atomicity are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any]
_REQUIRED = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: bool
    names: tuple[str, ...]  # bind names, in the order the driver wants them
    fixed: tuple[Any, ...]  # the statement's own value for each bind, or _REQUIRED
    required: frozenset[str]
    converters: tuple[tuple[int, Processor], ...]  # (position, bind processor)
    results: tuple[Processor | None, ...]
    dialect: Dialect


class PreparedStatement:
    """One Core statement: compiled on first use per dialect, then executed without SQLAlchemy's
    per-statement machinery. Parameters are passed by bind name (``bindparam("x")`` → ``x``);
    binds the statement fixes itself (``kind == 'identity'``, ``LIMIT 1``) keep their value."""

    def __init__(self, statement: ClauseElement, *, parameters: Iterable[str] = ()) -> None:
        """``parameters`` names the columns an ``insert()`` takes (compiled as its VALUES)."""
        self.statement = statement
        self._column_keys = list(parameters) or None
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled: Any = self.statement.compile(dialect=dialect, column_keys=self._column_keys)
        names = tuple(compiled.positiontup if compiled.positional
                      else dict.fromkeys(compiled.bind_names.values()))
        fixed: list[Any] = []
        converters: list[tuple[int, Processor]] = []
        for position, name in enumerate(names):
            bind = compiled.binds[name]
            fixed.append(_REQUIRED if bind.required or bind.callable else bind.value)
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                converters.append((position, processor))
        results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
                        for column in getattr(self.statement, "selected_columns", ()))
        return _Compiled(
            sql=compiled.string, positional=compiled.positional, names=names,
            fixed=tuple(fixed),
            required=frozenset(n for n, f in zip(names, fixed, strict=True) if f is _REQUIRED),
            converters=tuple(converters), results=results, dialect=dialect)

    @staticmethod
    def _parameters(compiled: _Compiled, values: Mapping[str, Any],
                    memo: dict[tuple[int, int], Any] | None = None) -> Any:
        if not compiled.required <= values.keys():
            missing = ", ".join(sorted(compiled.required - values.keys()))
            raise KeyError(f"statement parameters not given: {missing}")
        out = [values.get(name, fixed)
               for name, fixed in zip(compiled.names, compiled.fixed, strict=True)]
        for position, processor in compiled.converters:
            value = out[position]
            if value is None:
                continue
            if memo is None:
                out[position] = processor(value)
                continue
            # The rows of one executemany often share a value (one timestamp for a batch of
            # audit events): converted once. Every value is alive for the whole call, so its
            # id() cannot be reused meanwhile.
            key = (position, id(value))
            converted = memo.get(key, _REQUIRED)
            if converted is _REQUIRED:
                converted = memo[key] = processor(value)
            out[position] = converted
        if compiled.positional:
            return tuple(out)
        return dict(zip(compiled.names, out, strict=True))

    def execute(self, session: Session, values: Mapping[str, Any] | None = None) -> int:
        """Run an INSERT, UPDATE or DELETE once; returns how many rows it matched."""
        cursor, _ = self._cursor(session, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _cursor(self, session: Session, values: Mapping[str, Any] | None
                ) -> tuple[Any, _Compiled]:
        connection = connection_of(session)
        compiled = self._for(connection.dialect)
        parameters = self._parameters(compiled, values or {})
        return _run(connection, compiled.sql, parameters, many=False), compiled

    def execute_many(self, session: Session, values: Sequence[Mapping[str, Any]]) -> None:
        """One ``executemany`` (an INSERT of many rows)."""
        if not values:
            return
        connection = connection_of(session)
        compiled = self._for(connection.dialect)
        memo: dict[tuple[int, int], Any] = {}
        _run(connection, compiled.sql, [self._parameters(compiled, v, memo) for v in values],
             many=True).close()

    def rows(self, session: Session, values: Mapping[str, Any] | None = None
             ) -> list[tuple[Any, ...]]:
        """Run a SELECT; its rows as tuples in ``selected_columns`` order, values processed
        by their column types (as a Core result would hand them back)."""
        cursor, compiled = self._cursor(session, values)
        try:
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        processors = compiled.results
        if not any(processors):
            return [tuple(row) for row in fetched]
        return [tuple(value if process is None or value is None else process(value)
                      for process, value in zip(processors, row, strict=True))
                for row in fetched]


_CONNECTION_KEY = "certgate_prepared_connection"


def connection_of(session: Session) -> Connection:
    """The session's connection in its current transaction, pending ORM changes flushed first
    (as ``session.execute`` would). Asking the session for it each time cost more than most
    statements, so it is kept for the transaction."""
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


def run_on_driver(connection: Connection, sql: str) -> None:
    """One parameterless statement on the connection's driver (``BEGIN IMMEDIATE``)."""
    _run(connection, sql, (), many=False).close()


def _run(connection: Connection, sql: str, parameters: Any, *, many: bool) -> Any:
    raw = connection.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
    except connection.dialect.loaded_dbapi.Error as exc:
        cursor.close()
        lost = connection.dialect.is_disconnect(exc, raw, cursor)
        if lost:
            connection.invalidate(exc)
        # No parameters in the message: they can hold certificate bytes and user data.
        raise DBAPIError.instance(sql, None, exc, connection.dialect.loaded_dbapi.Error,
                                  hide_parameters=True, connection_invalidated=lost,
                                  dialect=connection.dialect, ismulti=many) from exc
    return cursor
