"""Plain SQL over a DB-API connection: how the access core reads the store and appends audit.

Why: importing SQLAlchemy costs about 0.3 s of CPU on this machine (its Core alone; the ORM
adds 0.08 s), which is the whole time budget of ``certgate policy check``. The reads a
decision makes are written once, as SQL text, in ``certgate.store.access_reads``, and run
through a ``SQL`` object; that object wraps either a SQLAlchemy session's connection (the
gateway and every other command: ``certgate.store.changes.SessionSQL``) or a connection
opened with the driver alone (``certgate.store.direct``). So there is one set of
statements and one decoding of their rows, whichever way the connection was opened.

Statements use ``?`` placeholders; psycopg gets ``%s``. Values cross as the drivers hand
them over; the codecs here turn them into what the schema's column types would give
(UTC-aware datetimes, parsed JSON) and back, byte for byte as SQLAlchemy stores them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
)
"""Every SQLite connection runs these first, however it was opened."""


class SQL(Protocol):
    """One open transaction that runs SQL text (``?`` placeholders)."""

    @property
    def dialect(self) -> str: ...

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row the statement returns, as the driver hands them over."""

    def run(self, statement: str, params: Sequence[Any] = ()) -> int:
        """Run a statement that returns no rows; how many rows it changed."""

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row (``executemany``)."""


_TRANSLATED: dict[str, str] = {}


def for_driver(statement: str, dialect: str) -> str:
    """``statement`` in the driver's parameter style (psycopg wants ``%s``)."""
    if dialect == SQLITE:
        return statement
    translated = _TRANSLATED.get(statement)
    if translated is None:
        if "%" in statement:
            raise ValueError("a literal % would need escaping for psycopg")
        translated = _TRANSLATED[statement] = statement.replace("?", "%s")
    return translated


def placeholders(count: int) -> str:
    """``?, ?, ...`` for an ``IN (...)`` list of ``count`` values."""
    return ", ".join("?" * count)


# -- values ------------------------------------------------------------------------------------

_SQLITE_TIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def time_param(value: datetime, dialect: str) -> Any:
    """A timezone-aware time as the store's UTC columns keep it: on SQLite the naive-UTC text
    SQLAlchemy writes (and compares as text), on PostgreSQL the aware datetime."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use timezone-aware UTC")
    if dialect != SQLITE:
        return value.astimezone(UTC)
    v = value.astimezone(UTC)
    return _SQLITE_TIME % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def time_value(value: Any) -> datetime | None:
    """A stored time, always UTC-aware (SQLite gives text without a zone)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a stored time: {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def required_time(value: Any) -> datetime:
    found = time_value(value)
    if found is None:
        raise ValueError("a required time column is NULL")
    return found


def json_value(value: Any) -> Any:
    """A JSON column's value: SQLite gives the text, psycopg the parsed value."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def json_param(value: Any, dialect: str) -> Any:
    """A value for a JSON column as SQLAlchemy's JSON type writes it: ``json.dumps`` text on
    SQLite, psycopg's ``Json`` (the same text, typed json) on PostgreSQL."""
    if dialect == SQLITE:
        return json.dumps(value)
    from psycopg.types.json import Json

    return Json(value)


def bytes_value(value: Any) -> bytes:
    return bytes(value)


# -- a connection opened with the driver alone ------------------------------------------------


class CursorSQL:
    """``SQL`` on DB-API cursors; subclasses say how a statement gets its open cursor."""

    _dialect: str

    @property
    def dialect(self) -> str:
        return self._dialect

    def _cursor(self, statement: str, params: Any, many: bool = False) -> Any:
        """An open cursor that ran ``statement`` (in the driver's parameter style)."""
        raise NotImplementedError

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._cursor(for_driver(statement, self._dialect), tuple(params))
        try:
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def run(self, statement: str, params: Sequence[Any] = ()) -> int:
        cursor = self._cursor(for_driver(statement, self._dialect), tuple(params))
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor(for_driver(statement, self._dialect), [tuple(r) for r in rows],
                         many=True).close()


class DriverSQL(CursorSQL):
    """``SQL`` over a DB-API connection inside a transaction its owner opened."""

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        self._dialect = dialect

    def _cursor(self, statement: str, params: Any, many: bool = False) -> Any:
        cursor = self.connection.cursor()
        try:
            if many:
                cursor.executemany(statement, params)
            else:
                cursor.execute(statement, params)
        except BaseException:
            cursor.close()
            raise
        return cursor


class SQLDatabase(Protocol):
    """A store whose units of work run plain SQL: ``certgate.store.database.Database`` (through
    SQLAlchemy) and ``certgate.store.direct.DirectDatabase`` (the driver alone)."""

    @property
    def dialect(self) -> str: ...

    @property
    def safe_url(self) -> str: ...

    def read_sql(self) -> AbstractContextManager[SQL]: ...

    def snapshot_sql(self) -> AbstractContextManager[SQL]:
        """A read transaction whose every statement sees the same committed state."""

    def write_sql(self) -> AbstractContextManager[SQL]:
        """A write transaction: committed when the block ends, rolled back on any error."""

    def dispose(self) -> None: ...
