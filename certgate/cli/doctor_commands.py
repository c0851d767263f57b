"""``certgate doctor``: one line per check of the installation, each failure with a fix."""

from __future__ import annotations

import sys

import click

from certgate.cli.main import AppContext, emit_json, pass_app
from certgate.errors import CertgateError


def add_commands(cli: click.Group) -> None:
    cli.add_command(doctor)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def doctor(app: AppContext, as_json: bool) -> None:
    """Check the home's permissions, the database, certificates, consoles and the clock.

    Exits 0 when nothing failed (warnings allowed), 1 otherwise.
    """
    from certgate.doctor import FAIL, diagnose
    from certgate.store.database import Database

    database = None
    if app.home.exists():
        try:
            database = Database(app.home.database_url())
        except CertgateError:
            database = None
    try:
        findings = diagnose(app.home, database)
    finally:
        if database is not None:
            database.dispose()
    if as_json:
        emit_json([f.as_dict() for f in findings])
    else:
        for finding in findings:
            click.echo(finding.line())
    if any(f.status == FAIL for f in findings):
        sys.exit(1)
