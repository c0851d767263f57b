"""The Alembic migrations build exactly the schema the ORM models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from certgate.store.database import Database
from certgate.store.schema import Base


def migrated(url: str) -> Database:
    database = Database(url)
    database.migrate()
    return database


def test_upgrade_head_creates_exactly_the_model_tables(database_url: str) -> None:
    database = migrated(database_url)
    try:
        tables = set(inspect(database.engine).get_table_names()) - {"alembic_version"}
        assert tables == set(Base.metadata.tables)
        for name, table in Base.metadata.tables.items():
            columns = {c["name"] for c in inspect(database.engine).get_columns(name)}
            assert columns == set(table.columns.keys()), name
        database.check_schema()
    finally:
        database.dispose()


def test_models_have_not_drifted_from_the_migrations(database_url: str) -> None:
    database = migrated(database_url)
    try:
        with database.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
    finally:
        database.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    database = migrated(database_url)
    try:
        database.migrate()
        database.check_schema()
    finally:
        database.dispose()
