"""``certgate vm``: the VMs behind the gateway and their consoles."""

from __future__ import annotations

import click

from certgate.cli.main import AppContext, CommandGroup, emit_json, pass_app
from certgate.consoles.escape import DEFAULT_ESCAPE
from certgate.consoles.keeper import keep_mode
from certgate.consoles.uri import parse_console_uri
from certgate.display import printable
from certgate.fleet import (
    add_vm,
    parse_labels,
    remove_vm,
    set_vm_console,
)
from certgate.store import repositories as repo


def add_commands(cli: click.Group) -> None:
    cli.add_command(vm_group)


@click.group("vm", cls=CommandGroup)
def vm_group() -> None:
    """The VMs behind the gateway and their consoles."""


@vm_group.command("add")
@click.argument("name")
@click.option("--console", "console_uri", required=True, metavar="URI",
              help="unix:/path[?telnet], tcp:host:port, exec:COMMAND, ssh://user@host:port")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE")
@click.option("--keep", type=click.Choice(["always", "on-demand"]), default=None,
              help="Hold and log the console while nobody is attached (default: always for "
                   "unix: and tcp: consoles, on-demand otherwise).")
@click.option("--escape", default=None, metavar="SEQ",
              help=f"Escape menu prefix, a control key and a key (default {DEFAULT_ESCAPE}).")
@pass_app
def vm_add(app: AppContext, name: str, console_uri: str, labels: tuple[str, ...],
           keep: str | None, escape: str | None) -> None:
    """Register a VM and how to reach its console."""
    vm = add_vm(app.installation(), name, console_uri, parse_labels(labels), keep=keep,
                escape=escape)
    click.echo(f"added VM {vm.name} ({vm.console_uri}, console kept: {_keep(vm)})")


@vm_group.command("set")
@click.argument("name")
@click.option("--keep", type=click.Choice(["always", "on-demand"]), default=None)
@click.option("--escape", default=None, metavar="SEQ")
@pass_app
def vm_set(app: AppContext, name: str, keep: str | None, escape: str | None) -> None:
    """Change how the gateway holds a VM's console; a running gateway applies it shortly."""
    vm = set_vm_console(app.installation(), name, keep=keep, escape=escape)
    click.echo(f"VM {vm.name}: console kept: {_keep(vm)}, escape {vm.escape or DEFAULT_ESCAPE}")


def _keep(vm: repo.VM) -> str:
    return str(keep_mode(parse_console_uri(vm.console_uri), vm.keep))


@vm_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def vm_list(app: AppContext, as_json: bool) -> None:
    """List VMs."""
    with app.installation().database.read() as session:
        vms = repo.list_vms(session)
    if as_json:
        emit_json([{"name": v.name, "console": v.console_uri, "labels": v.labels,
                    "keep": _keep(v), "escape": v.escape or DEFAULT_ESCAPE,
                    "created_at": v.created_at.isoformat()} for v in vms])
        return
    click.echo(f"{'NAME':<20} {'CONSOLE':<44} {'KEEP':<10} LABELS")
    for vm in vms:
        labels = ",".join(f"{k}={v}" for k, v in sorted(vm.labels.items()))
        click.echo(printable(f"{vm.name:<20} {vm.console_uri:<44} {_keep(vm):<10} {labels}"))


@vm_group.command("rm")
@click.argument("name")
@pass_app
def vm_rm(app: AppContext, name: str) -> None:
    """Remove a VM (its audit history stays)."""
    remove_vm(app.installation(), name)
    click.echo(f"removed VM {name}")
