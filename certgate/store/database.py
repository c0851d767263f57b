"""Engine, units of work and schema migration for SQLite (embedded) and PostgreSQL (shared).

Writers use ``Database.write()``: on SQLite the transaction starts with ``BEGIN IMMEDIATE`` so
two processes never both read and then both try to upgrade to a write lock (which SQLite
resolves by failing one of them); on PostgreSQL row locks do the same job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from certgate.errors import StoreError
from certgate.store import changes
from certgate.store.session_sql import run_on_driver
from certgate.store.sql import SQLITE_PRAGMAS

if TYPE_CHECKING:
    from alembic.config import Config

    from certgate.store.changes import SessionSQL

def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:  # shared with certgate.store.direct
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Straight to the driver: every unit of work pays this, and SQLAlchemy's statement
        # machinery cost more than SQLite's BEGIN itself.
        statement = ("BEGIN IMMEDIATE" if connection.get_execution_options().get("certgate_write")
                     else "BEGIN")
        run_on_driver(connection, statement).close()


class Database:
    """One database, two kinds of unit of work: read and write."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        try:
            # A liveness ping per checkout is worth it for a server (PostgreSQL restarts,
            # idle timeouts) and pure overhead for a local SQLite file.
            self.engine = create_engine(url, echo=echo,
                                        pool_pre_ping=not url.startswith("sqlite"))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open database {self.safe_url}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            _configure_sqlite(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(certgate_write=True), expire_on_commit=False
        )
        changes.install(self._write)
        # SQLite transactions always see one snapshot; PostgreSQL's default (read committed)
        # lets each statement see newer commits, so snapshots ask for repeatable read.
        self._snapshot = (
            sessionmaker(self.engine.execution_options(isolation_level="REPEATABLE READ"),
                         expire_on_commit=False)
            if self.engine.dialect.name == "postgresql" else self._read
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden: URLs end up in errors and logs."""
        try:
            return self.engine.url.render_as_string(hide_password=True)
        except AttributeError:
            return self.url.split("@")[-1]

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._guard(), self._read() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read transaction whose every statement sees the same committed state."""
        with self._guard(), self._snapshot() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on any error."""
        with self._guard(), self._write() as session, session.begin():
            yield session

    # The same units of work as plain-SQL transactions (``certgate.store.sql.SQL``), for the
    # statements shared with ``certgate.store.direct``.

    @contextmanager
    def read_sql(self) -> Iterator[SessionSQL]:
        with self.read() as session:
            yield changes.SessionSQL(session)

    @contextmanager
    def snapshot_sql(self) -> Iterator[SessionSQL]:
        with self.snapshot() as session:
            yield changes.SessionSQL(session)

    @contextmanager
    def write_sql(self) -> Iterator[SessionSQL]:
        with self.write() as session:
            yield changes.SessionSQL(session)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise StoreError(f"database {self.safe_url}: {exc.orig}") from exc

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------------

    # Alembic is imported only where it is used: it costs every CLI command ~0.2 s otherwise.

    def _alembic_config(self) -> Config:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(resources.files("migrations")))
        config.attributes["certgate_engine"] = self.engine
        return config

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        from alembic import command

        with self._guard():
            command.upgrade(self._alembic_config(), "head")

    def check_schema(self) -> None:
        """Refuse to run against a database that is behind (or ahead of) this code."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self._alembic_config())
        with self._guard(), self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        head = script.get_current_head()
        if current != head:
            raise StoreError(
                f"database {self.safe_url} is at schema {current or 'none'}, this certgate "
                f"needs {head}: run `certgate db upgrade`"
            )
