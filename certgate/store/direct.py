"""The store opened with its driver alone (sqlite3 or psycopg), for short-lived commands.

Why: ``certgate policy check`` is a fresh process each time, and importing SQLAlchemy cost
more than its whole time budget. It runs the very statements the gateway runs
(``certgate.store.access_reads``, ``certgate.audit.appending``); only the connection is
opened here, configured as ``certgate.store.database.Database`` configures its own: the same
SQLite pragmas, ``BEGIN`` / ``BEGIN IMMEDIATE``, and repeatable read for PostgreSQL
snapshots. A URL this module does not know how to open directly is opened by ``Database``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from certgate.errors import StoreError
from certgate.store.sql import POSTGRESQL, SQLITE, SQLITE_PRAGMAS, DriverSQL

_SQLITE_URL = re.compile(r"sqlite:///(?P<path>[^?#]+)")
_POSTGRES_URL = re.compile(r"postgresql\+psycopg://(?P<rest>[^#]*)")
_PASSWORD = re.compile(r"(?P<head>^[^/@]*?://[^:/@]*:)[^@]*(?P<tail>@)")


def direct_dialect(url: str) -> str | None:
    """The dialect ``DirectDatabase`` opens ``url`` with; None when only ``Database`` can."""
    if _SQLITE_URL.fullmatch(url):
        return SQLITE
    if _POSTGRES_URL.fullmatch(url):
        return POSTGRESQL
    return None


class DirectDatabase:
    """One connection, opened on first use; units of work as in ``Database``."""

    def __init__(self, url: str, *, password: str | None = None) -> None:
        """``password``, when given, replaces any in ``url`` (as ``Home.database_url`` does)."""
        dialect = direct_dialect(url)
        if dialect is None:
            raise ValueError(f"cannot open {url.split('://')[0]} URLs without SQLAlchemy")
        self.url = url
        self._password = password
        self._dialect = dialect
        self._connection: Any = None

    @property
    def dialect(self) -> str:
        return self._dialect

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, as SQLAlchemy renders it."""
        return _PASSWORD.sub(r"\g<head>***\g<tail>", self.url, count=1)

    def _connect(self) -> Any:
        if self._connection is not None:
            return self._connection
        connection: Any
        if self._dialect == SQLITE:
            import sqlite3

            match = _SQLITE_URL.fullmatch(self.url)
            assert match is not None
            connection = sqlite3.connect(match["path"], isolation_level=None,
                                         check_same_thread=False)
            try:
                for pragma in SQLITE_PRAGMAS:
                    connection.execute(pragma)
            except sqlite3.Error:
                connection.close()
                raise
        else:
            import psycopg

            match = _POSTGRES_URL.fullmatch(self.url)
            assert match is not None
            # libpq reads the same URL (percent-encoded password included).
            extra: dict[str, Any] = {} if self._password is None else {"password": self._password}
            connection = psycopg.connect(f"postgresql://{match['rest']}", **extra)
        self._connection = connection
        return connection

    @contextmanager
    def _transaction(self, begin: str | None, isolation: str | None) -> Iterator[DriverSQL]:
        with self._guard():
            connection = self._connect()
            if isolation is not None:
                import psycopg

                connection.isolation_level = psycopg.IsolationLevel[isolation]
            try:
                if begin is not None:
                    connection.execute(begin)
                yield DriverSQL(connection, self._dialect)
            except BaseException:
                connection.rollback()
                raise
            else:
                connection.commit()
            finally:
                if isolation is not None:
                    connection.isolation_level = None

    @contextmanager
    def read_sql(self) -> Iterator[DriverSQL]:
        with self._transaction("BEGIN" if self._dialect == SQLITE else None, None) as sql:
            yield sql

    @contextmanager
    def snapshot_sql(self) -> Iterator[DriverSQL]:
        """A read transaction whose every statement sees the same committed state."""
        if self._dialect == SQLITE:
            with self._transaction("BEGIN", None) as sql:
                yield sql
        else:
            with self._transaction(None, "REPEATABLE_READ") as sql:
                yield sql

    @contextmanager
    def write_sql(self) -> Iterator[DriverSQL]:
        """A write transaction: committed when the block ends, rolled back on any error."""
        with self._transaction("BEGIN IMMEDIATE" if self._dialect == SQLITE else None,
                               None) as sql:
            yield sql

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Driver errors as ``Database`` reports them: one line naming the database."""
        try:
            yield
        except Exception as exc:
            if _is_operational(exc):
                raise StoreError(f"database {self.safe_url}: {exc}") from exc
            raise

    def dispose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _is_operational(exc: BaseException) -> bool:
    """The DB-API OperationalError of either driver (SQLAlchemy turns these, and only these,
    into ``StoreError`` in ``Database``), without importing a driver that is not in use."""
    return any(cls.__name__ == "OperationalError"
               and cls.__module__.split(".")[0] in ("sqlite3", "psycopg")
               for cls in type(exc).__mro__)
