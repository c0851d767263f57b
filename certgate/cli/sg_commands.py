"""Security-group commands: ``sg ...`` and ``vm nic ...`` (see docs/security-groups.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certgate.cli.main import AppContext, CommandGroup, emit_json, fail, pass_app
from certgate.cli.streams import read_input
from certgate.cli.vm_commands import vm_group
from certgate.errors import CertgateError
from certgate.firewall import operations as ops
from certgate.firewall.backends import BACKENDS
from certgate.secgroups.model import Direction, Protocol, SecurityGroup, SecurityRule
from certgate.secgroups.values import (
    parse_cidr,
    parse_description,
    parse_group_name,
    parse_ifname,
    parse_ports,
    parse_protocol,
)


def add_commands(cli: click.Group) -> None:
    """Add ``sg``, and ``nic`` below ``vm`` (registering ``vm`` too, whatever loads first)."""
    cli.add_command(sg_group)
    vm_group.add_command(nic_group)
    if "vm" not in cli.commands:
        cli.add_command(vm_group)


def _parsed(parse: Any, text: str, option: str) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise CertgateError(f"{option}: {exc}") from None


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"certgate: warning: {warning}", err=True)


backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default="nftables", show_default=True,
    help="Packet filter to load the groups into.")


@click.group("sg", cls=CommandGroup)
def sg_group() -> None:
    """Security groups: per-VM ingress whitelists loaded into nftables or iptables."""


@sg_group.command("create")
@click.argument("name")
@click.option("--description", default=None)
@click.option("--restrict-egress", is_flag=True,
              help="Members may send only what the group's egress rules allow.")
@pass_app
def sg_create(app: AppContext, name: str, description: str | None,
              restrict_egress: bool) -> None:
    """Create an empty group (all ingress denied until rules are added)."""
    name = _parsed(parse_group_name, name, "NAME")
    if description is not None:
        description = _parsed(parse_description, description, "--description")
    change = ops.create_group(app.installation(), name, description=description,
                              restrict_egress=restrict_egress)
    _warn(change.warnings)
    click.echo(f"created security group {name}")


@sg_group.command("set")
@click.argument("name")
@click.option("--description", default=None)
@click.option("--restrict-egress/--allow-egress", default=None,
              help="Restrict members' egress to the egress rules, or allow all egress.")
@pass_app
def sg_set(app: AppContext, name: str, description: str | None,
           restrict_egress: bool | None) -> None:
    """Change a group's description or egress mode."""
    if description is not None:
        description = _parsed(parse_description, description, "--description")
    change = ops.update_group(app.installation(), name, description=description,
                              restrict_egress=restrict_egress)
    _warn(change.warnings)
    click.echo(f"updated security group {name}")


@sg_group.command("rm")
@click.argument("name")
@pass_app
def sg_rm(app: AppContext, name: str) -> None:
    """Remove a group that no interface and no other group's rule uses."""
    change = ops.remove_group(app.installation(), name)
    _warn(change.warnings)
    click.echo(f"removed security group {name}")


def _rule_json(rule: SecurityRule) -> dict[str, Any]:
    return {"id": rule.rule_id, "direction": str(rule.direction),
            "protocol": str(rule.protocol), "ports": str(rule.ports) if rule.ports else None,
            "cidr": str(rule.cidr) if rule.cidr is not None else None,
            "group": rule.remote_group, "description": rule.description}


def _group_json(group: SecurityGroup, members: list[str]) -> dict[str, Any]:
    return {"name": group.name, "description": group.description,
            "restrict_egress": group.restrict_egress,
            "rules": [_rule_json(r) for r in group.rules], "interfaces": members}


@sg_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sg_list(app: AppContext, as_json: bool) -> None:
    """List groups with their rule and member counts."""
    fleet = ops.stored_fleet(app.installation())
    if as_json:
        emit_json([_group_json(g, [n.ifname for n in fleet.members[g.name]])
                   for g in fleet.groups])
        return
    click.echo(f"{'NAME':<24} {'INGRESS':>7} {'EGRESS':>12} {'MEMBERS':>7}  DESCRIPTION")
    for g in fleet.groups:
        egress = str(len(g.egress)) if g.restrict_egress else "allowed"
        click.echo(f"{g.name:<24} {len(g.ingress):>7} {egress:>12} "
                   f"{len(fleet.members[g.name]):>7}  {g.description or ''}")


@sg_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sg_show(app: AppContext, name: str, as_json: bool) -> None:
    """Show a group's rules (with the ids ``sg rule rm`` takes) and its member interfaces."""
    fleet = ops.stored_fleet(app.installation())
    group = fleet.group_by_name.get(name)
    if group is None:
        fail(f"no security group named {name}")
    members = [f"{n.ifname} (VM {n.vm})" for n in fleet.members[name]]
    if as_json:
        emit_json(_group_json(group, [n.ifname for n in fleet.members[name]]))
        return
    click.echo(f"security group {group.name}" +
               (f": {group.description}" if group.description else ""))
    egress = "restricted to its egress rules" if group.restrict_egress else "allowed"
    click.echo(f"egress: {egress}")
    click.echo(f"{'ID':>6}  RULE")
    for rule in group.rules:
        note = f"  # {rule.description}" if rule.description else ""
        click.echo(f"{rule.rule_id:>6}  {rule.describe()}{note}")
    click.echo(f"members: {', '.join(members) if members else '(none)'}")
    _warn(ops.group_warnings(group))


@sg_group.group("rule", cls=CommandGroup)
def rule_group() -> None:
    """Add and remove a group's rules."""


@rule_group.command("add")
@click.argument("group")
@click.option("--protocol", "-p", "protocol_text", default="tcp", show_default=True,
              help="tcp, udp, icmp or any.")
@click.option("--port", "port_text", default=None, metavar="PORT[-PORT]",
              help="Port or range (tcp/udp only; default: all ports).")
@click.option("--from", "from_cidr", default=None, metavar="CIDR", help="Ingress source.")
@click.option("--from-group", default=None, metavar="GROUP",
              help="Ingress from the members of GROUP.")
@click.option("--to", "to_cidr", default=None, metavar="CIDR", help="Egress destination.")
@click.option("--to-group", default=None, metavar="GROUP",
              help="Egress to the members of GROUP.")
@click.option("--description", default=None)
@pass_app
def rule_add(app: AppContext, group: str, protocol_text: str, port_text: str | None,
             from_cidr: str | None, from_group: str | None, to_cidr: str | None,
             to_group: str | None, description: str | None) -> None:
    """Add an ingress (--from/--from-group) or egress (--to/--to-group) rule to GROUP."""
    given = [o for o, v in (("--from", from_cidr), ("--from-group", from_group),
                            ("--to", to_cidr), ("--to-group", to_group)) if v is not None]
    if len(given) != 1:
        raise CertgateError("give exactly one of --from, --from-group, --to, --to-group")
    protocol: Protocol = _parsed(parse_protocol, protocol_text, "--protocol")
    ports = _parsed(parse_ports, port_text, "--port") if port_text is not None else None
    if ports is not None and not protocol.has_ports:
        raise CertgateError(f"--port applies to tcp and udp only, not {protocol}")
    direction = Direction.INGRESS if given[0].startswith("--from") else Direction.EGRESS
    cidr_text = from_cidr or to_cidr
    cidr = _parsed(parse_cidr, cidr_text, given[0]) if cidr_text is not None else None
    remote = from_group or to_group
    if remote is not None:
        remote = _parsed(parse_group_name, remote, given[0])
    if description is not None:
        description = _parsed(parse_description, description, "--description")
    rule = SecurityRule(direction, protocol, ports, cidr, remote, description)
    change = ops.add_rule(app.installation(), group, rule)
    _warn(change.warnings)
    click.echo(f"added rule {change.rule_id} to {group}: {rule.describe()}")


@rule_group.command("rm")
@click.argument("group")
@click.argument("rule_id", type=int)
@pass_app
def rule_rm(app: AppContext, group: str, rule_id: int) -> None:
    """Remove rule RULE_ID (see ``sg show``) from GROUP."""
    change = ops.remove_rule(app.installation(), group, rule_id)
    _warn(change.warnings)
    click.echo(f"removed rule {rule_id} from {group}")


def _report(applied: ops.Applied, *, print_ruleset: bool) -> None:
    _warn(applied.plan.warnings)
    backend = applied.plan.backend.name
    if applied.mode == "dry-run":
        if print_ruleset:
            click.echo(applied.plan.text, nl=False)
        click.echo(f"# ruleset sha256 {applied.plan.sha256} ({backend})")
        if applied.diff is None:
            click.echo(f"# cannot compare with the loaded ruleset: {applied.loaded_error}")
        elif not applied.diff:
            click.echo("# no difference from the loaded ruleset")
        else:
            click.echo("# difference from the loaded ruleset:")
            for line in applied.diff:
                click.echo(line)
        return
    what = {"unchanged": "already loaded", "incremental": "changes loaded",
            "full": "loaded"}.get(applied.mode, applied.mode)
    click.echo(f"{backend} ruleset {applied.plan.sha256[:16]} {what} "
               f"({len(applied.plan.fleet.groups)} groups, {len(applied.plan.fleet.nics)} "
               f"interfaces, {applied.seconds * 1000:.0f} ms)")


@sg_group.command("apply")
@click.option("--dry-run", is_flag=True,
              help="Print the ruleset and its difference from what is loaded; change nothing.")
@click.option("--full", is_flag=True, help="Replace the whole table even if it looks current.")
@backend_option
@pass_app
def sg_apply(app: AppContext, dry_run: bool, full: bool, backend: str) -> None:
    """Load the stored groups into this host's packet filter, atomically."""
    _report(ops.apply(app.installation(), backend, dry_run=dry_run, full=full),
            print_ruleset=True)


@sg_group.command("unload")
@backend_option
@pass_app
def sg_unload(app: AppContext, backend: str) -> None:
    """Remove certgate's rules from this host's packet filter (nothing else is touched)."""
    removed = ops.unload(app.installation(), backend)
    click.echo(f"{backend}: certgate's rules removed" if removed
               else f"{backend}: nothing of certgate's was loaded")


@sg_group.command("apply-file")
@click.argument("file")
@click.option("--dry-run", is_flag=True,
              help="Check the file and show the ruleset and its difference; store nothing.")
@backend_option
@pass_app
def sg_apply_file(app: AppContext, file: str, dry_run: bool, backend: str) -> None:
    """Make FILE (YAML) the complete set of groups, then load them."""
    data = read_input(file, "security groups file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CertgateError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    _report(ops.apply_file(app.installation(), text, Path(file).name, backend,
                           dry_run=dry_run), print_ruleset=True)


# -- vm nic -----------------------------------------------------------------------------------


@click.group("nic", cls=CommandGroup)
def nic_group() -> None:
    """A VM's network interfaces on the host and their security groups."""


@nic_group.command("add")
@click.argument("vm")
@click.argument("ifname")
@click.option("--addr", "addresses", multiple=True, metavar="CIDR",
              help="An address (or range) the VM owns on this interface; repeatable.")
@click.option("--sg", "groups", multiple=True, metavar="NAME",
              help="A security group of the interface; repeatable.")
@pass_app
def nic_add(app: AppContext, vm: str, ifname: str, addresses: tuple[str, ...],
            groups: tuple[str, ...]) -> None:
    """Register IFNAME (tap/vif/veth on the host) as an interface of VM."""
    ifname = _parsed(parse_ifname, ifname, "IFNAME")
    networks = [_parsed(parse_cidr, a, "--addr") for a in addresses]
    change = ops.add_nic(app.installation(), vm, ifname, networks, list(groups))
    _warn(change.warnings)
    click.echo(f"added interface {ifname} to VM {vm}")


@nic_group.command("set-groups")
@click.argument("vm")
@click.argument("ifname")
@click.option("--sg", "groups", multiple=True, metavar="NAME")
@pass_app
def nic_set_groups(app: AppContext, vm: str, ifname: str, groups: tuple[str, ...]) -> None:
    """Replace the security groups of an interface."""
    change = ops.set_nic_groups(app.installation(), vm, ifname, list(groups))
    _warn(change.warnings)
    click.echo(f"interface {ifname} of VM {vm} is in: {', '.join(groups) or '(no group)'}")


@nic_group.command("rm")
@click.argument("vm")
@click.argument("ifname")
@pass_app
def nic_rm(app: AppContext, vm: str, ifname: str) -> None:
    """Forget an interface of VM."""
    change = ops.remove_nic(app.installation(), vm, ifname)
    _warn(change.warnings)
    click.echo(f"removed interface {ifname} from VM {vm}")


@nic_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def nic_list(app: AppContext, as_json: bool) -> None:
    """List all VMs' interfaces."""
    fleet = ops.stored_fleet(app.installation())
    nics = sorted(fleet.nics, key=lambda n: (n.vm, n.ifname))
    if as_json:
        emit_json([{"vm": n.vm, "interface": n.ifname,
                    "addresses": [str(a) for a in n.addresses], "groups": list(n.groups)}
                   for n in nics])
        return
    click.echo(f"{'VM':<20} {'INTERFACE':<16} {'ADDRESSES':<34} GROUPS")
    for n in nics:
        click.echo(f"{n.vm:<20} {n.ifname:<16} {','.join(map(str, n.addresses)):<34} "
                   f"{','.join(n.groups)}")
