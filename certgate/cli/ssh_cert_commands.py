"""``certgate ssh-cert``: short-lived OpenSSH user certificates."""

from __future__ import annotations

import click

from ca import keys
from certgate.cli.main import AppContext, pass_app
from certgate.cli.streams import read_input, write_output
from certgate.cli.values import parse_duration_option
from certgate.fleet import (
    issue_ssh_certificate,
)


def add_commands(cli: click.Group) -> None:
    cli.add_command(ssh_cert)


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
    # one line, one newline: a blank line after it makes ssh warn "invalid format"
    write_output(out, line.rstrip(b"\r\n") + b"\n")
    click.echo(f"OpenSSH certificate {serial} for {name}", err=True)
