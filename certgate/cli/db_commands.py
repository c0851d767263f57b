"""``certgate db``: database schema maintenance."""

from __future__ import annotations

import click

from certgate.cli.main import AppContext, CommandGroup, pass_app
from certgate.store.database import Database


def add_commands(cli: click.Group) -> None:
    cli.add_command(db_group)


@click.group("db", cls=CommandGroup)
def db_group() -> None:
    """Database schema maintenance."""


@db_group.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Migrate the database to the schema this certgate needs."""
    app.home.require()
    database = Database(app.home.database_url())
    try:
        database.migrate()
    finally:
        database.dispose()
    click.echo("database schema is current")
