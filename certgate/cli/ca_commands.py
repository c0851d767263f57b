"""``certgate ca``: inspect and export the CA, AA and SSH trust lines."""

from __future__ import annotations

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import keys
from ca.serials import format_serial
from certgate.cli.main import AppContext, CommandGroup, emit_json, fail, pass_app
from certgate.cli.streams import write_output
from certgate.display import printable
from certgate.provisioning import known_hosts_line


def add_commands(cli: click.Group) -> None:
    cli.add_command(ca_group)


@click.group("ca", cls=CommandGroup)
def ca_group() -> None:
    """Inspect and export the CA and Attribute Authority certificates."""


def _describe_cert(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format_serial(cert.serial_number),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": keys.spki_sha256(keys.check_public_key(cert.public_key())),
    }


@ca_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def ca_show(app: AppContext, as_json: bool) -> None:
    """Show the root CA, the Attribute Authority and the gateway's certificates."""
    inst = app.installation()
    info = {
        "home": str(app.home.root),
        "gateway_name": inst.config.gateway_name,
        "database": inst.database.safe_url,
        "root": _describe_cert(inst.root_certificate),
        "attribute_authority": _describe_cert(inst.aa_certificate),
    }
    if as_json:
        emit_json(info)
        return
    click.echo(f"home          {info['home']}")
    click.echo(f"gateway name  {info['gateway_name']}")
    click.echo(f"database      {info['database']}")
    for label in ("root", "attribute_authority"):
        cert = info[label]
        assert isinstance(cert, dict)
        click.echo(f"{label.replace('_', ' ')}:")
        for key, value in cert.items():
            click.echo(printable(f"  {key:<11} {value}"))


@ca_group.command("export")
@click.option("--aa", is_flag=True, help="Export the Attribute Authority certificate instead.")
@click.option("--known-hosts", is_flag=True,
              help="Print the @cert-authority line users add to ~/.ssh/known_hosts.")
@click.option("--upstream-key", is_flag=True,
              help="Print the gateway's public key for guests' authorized_keys (ssh:// VMs).")
@click.option("--out", default=None, metavar="FILE")
@pass_app
def ca_export(app: AppContext, aa: bool, known_hosts: bool, upstream_key: bool,
              out: str | None) -> None:
    """Print the root (or AA) certificate as PEM, or the SSH trust lines."""
    if sum((aa, known_hosts, upstream_key)) > 1:
        fail("choose one of --aa, --known-hosts, --upstream-key")
    inst = app.installation()
    if known_hosts:
        write_output(out, known_hosts_line(inst.home, inst.config).encode() + b"\n")
        return
    if upstream_key:
        from ca import ssh_certs  # imports asyncssh: only where needed, CLI start-up stays fast

        key = keys.read_private_key(app.home.upstream_key, inst.passphrase())
        comment = f"certgate-gateway@{inst.config.gateway_name}"
        line = ssh_certs.openssh_line(key.public_key(), comment)
        write_output(out, line.encode() + b"\n")
        return
    cert = inst.aa_certificate if aa else inst.root_certificate
    write_output(out, cert.public_bytes(Encoding.PEM))
