"""``certgate attr``: attribute certificates (grant, list, export, verify)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from ca import attribute_cert
from ca.attributes import parse_attribute_assignments
from ca.errors import MalformedInputError
from ca.serials import format_serial, parse_serial
from certgate.ca_service import GrantRequest
from certgate.cli.main import AppContext, CommandGroup, emit_json, fail, pass_app
from certgate.cli.streams import read_input, say, write_output
from certgate.cli.values import parse_duration_option
from certgate.errors import CertgateError
from certgate.store import repositories as repo


def add_commands(cli: click.Group) -> None:
    cli.add_command(attr_group)


@click.group("attr", cls=CommandGroup)
def attr_group() -> None:
    """Attribute certificates (RFC 5755): grant, list, export, verify."""


@attr_group.command("grant")
@click.argument("name", metavar="NAME[,NAME...]")
@click.argument("assignments", nargs=-1, required=True, metavar="ATTR=VALUE...")
@click.option("--valid", default="8h", show_default=True, help="Validity, e.g. 8h, 30d, 1h30m.")
@click.option("--target", "targets", multiple=True, metavar="VM",
              help="Restrict the AC to these VMs (repeatable); default: any VM.")
@pass_app
def attr_grant(app: AppContext, name: str, assignments: tuple[str, ...], valid: str,
               targets: tuple[str, ...]) -> None:
    """Issue an attribute certificate: role=, group=, clearance=, grant=. Prints its serial.

    Several users, comma-separated, each get their own AC, all in one transaction (all or
    none); the serials are printed one per line in the order of the names.
    """
    attributes = parse_attribute_assignments(list(assignments))
    duration = parse_duration_option(valid, "--valid")
    users = [user for user in name.split(",") if user]
    if not users or len(set(users)) != len(users):
        raise CertgateError(f"NAME {name!r}: give one or more distinct user names, comma-separated")
    inst = app.installation()
    issued = inst.ca.grant_many([
        GrantRequest(user, attributes, duration, tuple(targets))
        for user in users
    ])
    for certificate in issued:
        click.echo(certificate.serial)


@attr_group.command("list")
@click.argument("name", required=False)
@click.option("--all", "show_all", is_flag=True, help="Include expired and revoked ACs.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def attr_list(app: AppContext, name: str | None, show_all: bool, as_json: bool) -> None:
    """List attribute certificates (of one user, or everyone's)."""
    inst = app.installation()
    at = datetime.now(UTC)
    with inst.database.read() as session:
        certs = repo.certificates_of(session, name, repo.ATTRIBUTE)
    if not show_all:
        certs = [c for c in certs if c.state_at(at) == "valid"]
    if as_json:
        emit_json([c.summary(at) for c in certs])
        return
    say(f"{'SERIAL':<41} {'USER':<16} {'STATE':<13} {'UNTIL':<26} ATTRIBUTES")
    for c in certs:
        targets = f" targets={','.join(c.targets)}" if c.targets else ""
        say(f"{c.serial:<41} {c.user:<16} {c.state_at(at):<13} "
            f"{c.not_after.isoformat():<26} {c.subject}{targets}")


@attr_group.command("export")
@click.argument("serial")
@click.option("--out", default=None, metavar="FILE")
@click.option("--pem", is_flag=True, help="PEM instead of DER.")
@pass_app
def attr_export(app: AppContext, serial: str, out: str | None, pem: bool) -> None:
    """Export an attribute certificate (DER by default)."""
    inst = app.installation()
    with inst.database.read() as session:
        cert = repo.get_certificate(session, format_serial(parse_serial(serial)))
    if cert.kind != repo.ATTRIBUTE:
        raise CertgateError(
            f"{cert.serial} is an {cert.kind} certificate, not an attribute certificate"
        )
    data = attribute_cert.attribute_certificate_pem(cert.der) if pem else cert.der
    if out is None and not pem and sys.stdout.isatty():
        raise CertgateError("refusing to write DER to a terminal: use --out FILE or --pem")
    write_output(out, data)


@attr_group.command("verify")
@click.argument("file")
@click.option("--vm", default=None, help="Also check the AC is valid for this VM.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def attr_verify(app: AppContext, file: str, vm: str | None, as_json: bool) -> None:
    """Verify an AC file against this installation; exit 0 only when it is valid."""
    inst = app.installation()
    data = read_input(file, "attribute certificate")
    try:
        check = inst.ca.check_attribute_certificate(data, vm=vm)
    except MalformedInputError as exc:
        inst.audit.record(inst.event("attr.verify", outcome="error",
                                     details={"file": file, "error": str(exc)}))
        raise
    inst.audit.record(inst.event(
        "attr.verify", outcome="ok" if check.valid else "error", user=check.holder_user,
        serial=check.serial, details={"file": file, "error": check.error, "vm": vm}))
    attributes = check.attributes.as_dict() if check.attributes else None
    if as_json:
        emit_json({"valid": check.valid, "serial": check.serial, "holder": check.holder_serial,
                   "holder_user": check.holder_user, "attributes": attributes,
                   "targets": list(check.targets), "not_before": check.not_before.isoformat(),
                   "not_after": check.not_after.isoformat(), "error": check.error})
    else:
        say(f"serial      {check.serial}")
        say(f"holder      {check.holder_serial} ({check.holder_user or 'unknown'})")
        say(f"attributes  {check.attributes.describe() if check.attributes else '-'}")
        say(f"targets     {', '.join(check.targets) or '(any)'}")
        say(f"validity    {check.not_before.isoformat()} .. {check.not_after.isoformat()}")
    if not check.valid:
        fail(check.error or "invalid")
    if not as_json:
        click.echo("valid")
