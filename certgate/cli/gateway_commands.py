"""Gateway commands: vm, policy, ssh-cert, serve."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import click

from ca import keys
from certgate.cli.ca_commands import parse_duration_option, read_input, write_output
from certgate.cli.main import AppContext, CommandGroup, emit_json, fail, pass_app
from certgate.display import printable
from certgate.errors import CertgateError
from certgate.fleet import (
    add_vm,
    apply_policy,
    check_policy,
    issue_ssh_certificate,
    parse_labels,
    remove_vm,
)
from certgate.policy.loader import decode_policy
from certgate.policy.model import sorted_privileges
from certgate.store import repositories as repo


def add_commands(cli: click.Group) -> None:
    for command in (vm_group, policy_group, ssh_cert, serve, demo):
        cli.add_command(command)


# -- VMs --------------------------------------------------------------------------------------


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


# -- policy -----------------------------------------------------------------------------------


@click.group("policy", cls=CommandGroup)
def policy_group() -> None:
    """Per-VM permission policies (YAML; see docs/policy.md)."""


@policy_group.command("apply")
@click.argument("file")
@pass_app
def policy_apply(app: AppContext, file: str) -> None:
    """Validate a policy file and make it the policy in force (a new version)."""
    text = decode_policy(read_input(file, "policy"), Path(file).name)
    applied = apply_policy(app.installation(), text, Path(file).name)
    if applied.unchanged:
        click.echo(f"policy unchanged (version {applied.version.version})")
    else:
        click.echo(f"applied policy version {applied.version.version} "
                   f"({len(applied.policy.rules)} rules)")


@policy_group.command("show")
@click.option("--version", "version", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def policy_show(app: AppContext, version: int | None, as_json: bool) -> None:
    """Print the policy in force (or an earlier version)."""
    inst = app.installation()
    with inst.database.read() as session:
        current = repo.current_policy(session)
        if version is not None:
            from sqlalchemy import select

            from certgate.store.schema import PolicyVersionRow
            row = session.execute(select(PolicyVersionRow).where(
                PolicyVersionRow.version == version)).scalar_one_or_none()
            if row is None:
                fail(f"no policy version {version}")
            current = repo.PolicyVersion(row.version, row.source, row.source_name,
                                         row.fingerprint, row.applied_at, row.applied_by)
    if current is None:
        fail("no policy applied yet: everything is denied (certgate policy apply FILE)")
    if as_json:
        emit_json({"version": current.version, "source_name": current.source_name,
                   "fingerprint": current.fingerprint,
                   "applied_at": current.applied_at.isoformat(),
                   "applied_by": current.applied_by, "source": current.source})
        return
    click.echo(f"# version {current.version}, applied {current.applied_at.isoformat()} by "
               f"{current.applied_by} from {current.source_name}", err=True)
    click.echo(current.source, nl=not current.source.endswith("\n"))


@policy_group.command("check")
@click.argument("user")
@click.argument("vm")
@click.option("--from", "source", default=None, metavar="IP", help="Source address.")
@click.option("--at", "at_text", default=None, metavar="TIME",
              help="ISO 8601 time (default: now; naive means UTC).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def policy_check(app: AppContext, user: str, vm: str, source: str | None,
                 at_text: str | None, as_json: bool) -> None:
    """Explain what the gateway would decide for USER on VM; exit 0 only when allowed."""
    at = _parse_time(at_text)
    if source is not None:
        source = _parse_source(source)
    inst = app.installation()
    decision, subject = check_policy(inst, user, vm, source=source, at=at)
    inst.audit.record(inst.event(
        "policy.check", outcome="allow" if decision.allowed else "deny", user=user, vm=vm,
        source=source, details={"at": at.isoformat(), "reasons": list(decision.reasons),
                                "matched_rules": list(decision.matched_rules)}))
    if as_json:
        emit_json({"allowed": decision.allowed,
                   "privileges": sorted_privileges(decision.privileges),
                   "matched_rules": list(decision.matched_rules),
                   "reasons": list(decision.reasons),
                   "attributes": subject.attributes.as_dict()})
    else:
        click.echo(printable(f"{user} on {vm} from {source or '(any source)'} at "
                             f"{at.isoformat()}"))
        click.echo(printable(f"attributes: {subject.attributes.describe() or '(none)'}"))
        click.echo(printable(decision.explain(), keep_newlines=True))
    if not decision.allowed:
        raise SystemExit(1)


def _parse_source(text: str) -> str:
    """An IP address, as the gateway would see it; anything else is an error, because a
    rule with source conditions must never be judged against a value that is no address."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise CertgateError(f"--from wants an IP address, not {text!r}") from None


def _parse_time(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CertgateError(f"--at {text!r}: not an ISO 8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- OpenSSH certificates -----------------------------------------------------------------------


@click.command("ssh-cert")
@click.argument("name")
@click.option("--pubkey", "pubkey_file", required=True, metavar="FILE")
@click.option("--valid", default="8h", show_default=True)
@click.option("--out", default=None, metavar="FILE",
              help="Where to write the certificate (ssh looks for KEY-cert.pub).")
@pass_app
def ssh_cert(app: AppContext, name: str, pubkey_file: str, valid: str, out: str | None) -> None:
    """Issue a short-lived OpenSSH user certificate for NAME's key."""
    public_key = keys.load_public_key(read_input(pubkey_file, "public key"))
    duration = parse_duration_option(valid, "--valid")
    line, serial = issue_ssh_certificate(app.installation(), name, public_key, duration)
    write_output(out, line + b"\n")
    click.echo(f"OpenSSH certificate {serial} for {name}", err=True)


# -- serve ------------------------------------------------------------------------------------


@click.command()
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Override the configured listen address.")
@click.option("--gateway-id", default=None,
              help="Name of this replica in session records (default: host name).")
@click.option("--log-level", default="info",
              type=click.Choice(["debug", "info", "warning", "error"]))
@pass_app
def serve(app: AppContext, listen: str | None, gateway_id: str | None, log_level: str) -> None:
    """Run the SSH gateway until interrupted."""
    from certgate.gateway.server import ServeOptions, serve_forever

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("asyncssh", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    inst = app.installation()
    inst.database.check_schema()
    host, port = inst.config.listen_host, inst.config.listen_port
    if listen:
        host, _, port_text = listen.rpartition(":")
        if not host or not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
            fail(f"--listen wants HOST:PORT, not {listen!r}")
        port = int(port_text)
    options = ServeOptions(host=host, port=port,
                           gateway_id=gateway_id or socket.gethostname(),
                           limits=inst.config.limits.login)

    def ready(ports: list[int]) -> None:
        click.echo(f"certgate gateway {options.gateway_id} listening on {host}:"
                   f"{','.join(map(str, ports))}", err=True)

    asyncio.run(serve_forever(inst, options, ready))


@click.command()
@click.option("--home", "demo_home", default="demo-home", show_default=True, metavar="DIR",
              help="Where to create the throwaway demo installation (replaced if it is one).")
@click.option("--port", default=2222, show_default=True, help="Preferred port on 127.0.0.1.")
@click.option("--simulated", is_flag=True, help="Skip QEMU; use the simulated console.")
def demo(demo_home: str, port: int, simulated: bool) -> None:
    """Create a demo installation with a VM and run the gateway on loopback."""
    from certgate.demo.run import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(Path(demo_home).absolute(), port=port, want_qemu=not simulated,
             say=lambda line: click.echo(line, err=False))
