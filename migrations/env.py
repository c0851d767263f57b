"""Alembic environment: runs against the engine certgate hands it, or an URL on the command line.

certgate calls migrations programmatically (``certgate init`` / ``certgate db upgrade``) and
passes its engine in ``config.attributes``; ``alembic -x url=...`` works for people too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from certgate.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("certgate_engine")
    if engine is not None:
        return engine
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("alembic: pass -x url=DATABASE_URL")
    return create_engine(url)


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
