"""The ``certgate`` command: a thin shell over the installation's operations.

Every error a person can cause ends as one line on stderr and a non-zero exit; when the
installation is open, the refusal is also written to the audit log.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ca.errors import CAError
from certgate.display import printable
from certgate.errors import AuditError, CertgateError, StoreError

if TYPE_CHECKING:
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

    def installation(self, *, direct_store: bool = False) -> Installation:
        """The opened installation; ``direct_store`` opens its store with the driver alone
        for the access core and the audit log (``Installation``), which spares a command that
        only decides and records the import of SQLAlchemy."""
        if self._installation is None:
            from certgate.installation import Installation

            self._installation = Installation(self.home, direct_store=direct_store)
        return self._installation

    @property
    def opened(self) -> Installation | None:
        return self._installation

    def close(self) -> None:
        if self._installation is not None:
            self._installation.close()


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"certgate: error: {printable(message)}", err=True)
    sys.exit(code)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class CertgateGroup(click.Group):
    """Turns domain errors into one line, an exit code and an audit event.

    Commands are loaded on demand: running one imports only the module that defines it, so
    ``certgate --version`` or ``certgate policy check`` do not pay for SQLAlchemy, asyncssh
    and the web stack they do not use (about a second on this machine).
    """

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            module = _COMMAND_MODULES.get(cmd_name)
            if module is not None:
                _load_commands(module)
            else:  # a command this table does not know yet: load them all
                register_all()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        register_all()
        return super().list_commands(ctx)

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
    from certgate.home import Home  # not needed by --version or --help, which end before this

    app = AppContext(Home.locate(home_option))
    app.command_path = ctx.invoked_subcommand or "certgate"
    ctx.obj = app


def register(*modules: Callable[[click.Group], None]) -> None:
    for add in modules:
        add(cli)


#: The modules of certgate.cli that add commands, in help order; each has ``add_commands``.
COMMAND_MODULES = (
    "init_commands", "ca_commands", "user_commands", "attr_commands", "revoke_commands",
    "db_commands", "vm_commands", "sg_commands", "policy_commands", "ssh_cert_commands",
    "serve_commands", "audit_commands", "web_commands", "doctor_commands", "console_commands",
)
#: Which module defines each top-level command (lets one command load alone). A command
#: missing here still works: an unknown name loads every module.
_COMMAND_MODULES = {
    "init": "init_commands", "ca": "ca_commands", "user": "user_commands",
    "attr": "attr_commands", "revoke": "revoke_commands", "crl": "revoke_commands",
    # sg_commands adds "sg" and the "vm" group with its "nic" subcommands.
    "db": "db_commands", "vm": "sg_commands", "sg": "sg_commands", "policy": "policy_commands",
    "ssh-cert": "ssh_cert_commands", "serve": "serve_commands", "demo": "serve_commands",
    "audit": "audit_commands", "web": "web_commands", "doctor": "doctor_commands",
    "console": "console_commands",
}
_loaded: set[str] = set()


def _load_commands(module_name: str) -> None:
    if module_name not in _loaded:
        module = importlib.import_module(f"certgate.cli.{module_name}")
        _loaded.add(module_name)
        module.add_commands(cli)


def register_all() -> click.Group:
    """Add every command group to ``certgate`` (once) and return it."""
    for module_name in COMMAND_MODULES:
        _load_commands(module_name)
    return cli


def main() -> None:
    try:
        cli.main(prog_name="certgate", standalone_mode=True)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: no traceback for a person
        fail(f"internal error ({type(exc).__name__}): {one_line(exc)}", EXIT_INTERNAL)
