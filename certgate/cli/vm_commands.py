"""``certgate vm``: the VMs behind the gateway and their consoles."""

from __future__ import annotations

import click

from certgate.cli.main import AppContext, CommandGroup, emit_json, pass_app
from certgate.fleet import (
    add_vm,
    parse_labels,
    remove_vm,
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
@pass_app
def vm_add(app: AppContext, name: str, console_uri: str, labels: tuple[str, ...]) -> None:
    """Register a VM and how to reach its console."""
    vm = add_vm(app.installation(), name, console_uri, parse_labels(labels))
    click.echo(f"added VM {vm.name} ({vm.console_uri})")


@vm_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def vm_list(app: AppContext, as_json: bool) -> None:
    """List VMs."""
    with app.installation().database.read() as session:
        vms = repo.list_vms(session)
    if as_json:
        emit_json([{"name": v.name, "console": v.console_uri, "labels": v.labels,
                    "created_at": v.created_at.isoformat()} for v in vms])
        return
    click.echo(f"{'NAME':<20} {'CONSOLE':<44} LABELS")
    for vm in vms:
        labels = ",".join(f"{k}={v}" for k, v in sorted(vm.labels.items()))
        click.echo(f"{vm.name:<20} {vm.console_uri:<44} {labels}")


@vm_group.command("rm")
@click.argument("name")
@pass_app
def vm_rm(app: AppContext, name: str) -> None:
    """Remove a VM (its audit history stays)."""
    remove_vm(app.installation(), name)
    click.echo(f"removed VM {name}")
