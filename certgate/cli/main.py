"""The ``certgate`` command: a thin shell over the installation's operations.

Every error a person can cause ends as one line on stderr and a non-zero exit; when the
installation is open, the refusal is also written to the audit log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from ca.errors import CAError
from certgate.errors import AuditError, CertgateError, StoreError
from certgate.home import Home
from certgate.installation import Installation

EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_INTERNAL = 70


class AppContext:
    """What commands share: the chosen home and, once opened, the installation."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._installation: Installation | None = None
        self.command_path = "certgate"

    def installation(self) -> Installation:
        if self._installation is None:
            self._installation = Installation(self.home)
        return self._installation

    @property
    def opened(self) -> Installation | None:
        return self._installation

    def close(self) -> None:
        if self._installation is not None:
            self._installation.close()


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"certgate: error: {message}", err=True)
    sys.exit(code)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class CertgateGroup(click.Group):
    """Turns domain errors into one line, an exit code and an audit event."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CertgateError, CAError) as exc:
            _audit_refusal(ctx, exc)
            fail(one_line(exc))
        except OSError as exc:
            _audit_refusal(ctx, exc)
            fail(one_line(exc))
        finally:
            app = ctx.find_object(AppContext)
            if app is not None:
                app.close()


def _audit_refusal(ctx: click.Context, exc: BaseException) -> None:
    """Record the refusal in the installation's audit log, if there is one to write to.

    Input is often refused before the command opened the installation (a malformed key
    file, a bad --valid); the refusal is still recorded when the home exists. A missing
    home, an unreachable database or a broken audit log leave nothing to record in.
    """
    app = ctx.find_object(AppContext)
    if app is None or isinstance(exc, StoreError | AuditError):
        return
    installation = app.opened
    if installation is None:
        if not app.home.exists():
            return
        try:
            installation = app.installation()
        except (CertgateError, CAError, OSError):
            return
    try:
        installation.record_failure(
            "cli.refused", one_line(exc), details={"command": app.command_path}
        )
    except (CertgateError, CAError, OSError):
        click.echo("certgate: warning: the refusal could not be written to the audit log",
                   err=True)


class CommandGroup(click.Group):
    """A command group below ``certgate`` that notes which command runs, for the audit log."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        app = ctx.find_object(AppContext)
        if app is not None and command is not None:
            app.command_path = f"{app.command_path} {command.name}"
        return name, command, rest


@click.group(cls=CertgateGroup)
@click.option("--home", "home_option", envvar="CERTGATE_HOME", metavar="DIR",
              help="Installation directory (default: $CERTGATE_HOME or ~/.certgate).")
@click.version_option(package_name="certgate")
@click.pass_context
def cli(ctx: click.Context, home_option: str | None) -> None:
    """certgate: certificate-based access to virtual machine consoles."""
    app = AppContext(Home.locate(home_option))
    app.command_path = ctx.invoked_subcommand or "certgate"
    ctx.obj = app


def register(*modules: Callable[[click.Group], None]) -> None:
    for add in modules:
        add(cli)


def register_all() -> click.Group:
    """Add every command group to ``certgate`` (once) and return it."""
    from certgate.cli import (
        attr_commands,
        audit_commands,
        ca_commands,
        console_commands,
        db_commands,
        doctor_commands,
        init_commands,
        policy_commands,
        revoke_commands,
        serve_commands,
        ssh_cert_commands,
        user_commands,
        vm_commands,
        web_commands,
    )

    if not cli.commands:
        register(init_commands.add_commands, ca_commands.add_commands,
                 user_commands.add_commands, attr_commands.add_commands,
                 revoke_commands.add_commands, db_commands.add_commands,
                 vm_commands.add_commands, policy_commands.add_commands,
                 ssh_cert_commands.add_commands, serve_commands.add_commands,
                 audit_commands.add_commands, console_commands.add_commands,
                 web_commands.add_commands, doctor_commands.add_commands)
    return cli


def main() -> None:
    register_all()
    try:
        cli.main(prog_name="certgate", standalone_mode=True)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: no traceback for a person
        fail(f"internal error ({type(exc).__name__}): {one_line(exc)}", EXIT_INTERNAL)
