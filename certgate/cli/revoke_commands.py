"""``certgate revoke`` and ``certgate crl``: revocation and CRLs."""

from __future__ import annotations

import click
from cryptography.hazmat.primitives.serialization import Encoding

from certgate.cli.main import AppContext, pass_app
from certgate.cli.streams import write_output
from certgate.errors import CertgateError


def add_commands(cli: click.Group) -> None:
    cli.add_command(revoke)
    cli.add_command(crl)


@click.command()
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              help="RFC 5280 reason: keyCompromise, affiliationChanged, superseded, "
                   "cessationOfOperation, privilegeWithdrawn, ...")
@pass_app
def revoke(app: AppContext, serial: str, reason: str) -> None:
    """Revoke an identity or attribute certificate; takes effect at once."""
    inst = app.installation()
    revoked = inst.ca.revoke(serial, reason=reason)
    click.echo(f"revoked {revoked.kind} certificate {revoked.serial} of {revoked.user} "
               f"({reason})")


@click.command()
@click.option("--out", default=None, metavar="FILE", help="Identity CRL (signed by the root).")
@click.option("--ac-out", default=None, metavar="FILE",
              help="Attribute CRL (signed by the AA).")
@click.option("--der", is_flag=True, help="DER instead of PEM (needs --out/--ac-out).")
@pass_app
def crl(app: AppContext, out: str | None, ac_out: str | None, der: bool) -> None:
    """Issue fresh CRLs; without options print both as PEM."""
    if der and not (out or ac_out):
        raise CertgateError("--der needs --out or --ac-out")
    inst = app.installation()
    identity_crl, attribute_crl = inst.ca.crls()
    encoding = Encoding.DER if der else Encoding.PEM
    if out or ac_out:
        if out:
            write_output(out, identity_crl.public_bytes(encoding))
        if ac_out:
            write_output(ac_out, attribute_crl.public_bytes(encoding))
        return
    write_output(None, identity_crl.public_bytes(Encoding.PEM)
                 + attribute_crl.public_bytes(Encoding.PEM))
