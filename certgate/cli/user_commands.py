"""``certgate user``: users and their identity certificates."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import keys
from certgate.cli.main import AppContext, CommandGroup, emit_json, pass_app
from certgate.cli.streams import read_input, say, write_output
from certgate.errors import CertgateError
from certgate.store import repositories as repo

KEY_PASSPHRASE_ENV = "CERTGATE_KEY_PASSPHRASE"


def add_commands(cli: click.Group) -> None:
    cli.add_command(user_group)


def _key_passphrase() -> bytes:
    value = os.environ.get(KEY_PASSPHRASE_ENV)
    if value:
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        raise CertgateError(f"the new private key is handed over encrypted: set "
                            f"{KEY_PASSPHRASE_ENV} or run on a terminal")
    entered: str = click.prompt("Passphrase for the new private key", hide_input=True,
                                confirmation_prompt=True)
    return entered.encode("utf-8")


@click.group("user", cls=CommandGroup)
def user_group() -> None:
    """Users and their identity certificates."""


@user_group.command("add")
@click.argument("name")
@click.option("--email", default=None)
@click.option("--pubkey", "pubkey_file", default=None, metavar="FILE",
              help="The user's public key: PEM SubjectPublicKeyInfo or an OpenSSH key line.")
@click.option("--csr", "csr_file", default=None, metavar="FILE",
              help="A PKCS#10 request (PEM or DER); its signature is checked.")
@click.option("--days", default=365, show_default=True, type=int)
@click.option("--out", default=None, metavar="FILE", help="Write the certificate here (PEM).")
@click.option("--key-out", default=None, metavar="FILE",
              help="Without --pubkey/--csr: generate a key pair and write it here, encrypted.")
@click.option("--key-type", type=click.Choice(keys.KEY_ALGORITHMS), default="ed25519",
              show_default=True)
@click.option("--key-format", type=click.Choice(["openssh", "pem", "pkcs12"]),
              default="openssh", show_default=True,
              help="openssh works with `ssh -i`; pkcs12 bundles the certificate too.")
@pass_app
def user_add(app: AppContext, name: str, email: str | None, pubkey_file: str | None,
             csr_file: str | None, days: int, out: str | None, key_out: str | None,
             key_type: keys.KeyAlgorithm, key_format: str) -> None:
    """Add a user and issue their identity certificate."""
    if pubkey_file and csr_file:
        raise CertgateError("give either --pubkey or --csr, not both")
    if key_out and (pubkey_file or csr_file):
        raise CertgateError("--key-out is for a generated key pair: drop --pubkey/--csr")
    generated: keys.PrivateKey | None = None
    if pubkey_file:
        public_key = keys.load_public_key(read_input(pubkey_file, "public key"))
    elif csr_file:
        csr = keys.load_csr(read_input(csr_file, "CSR"))
        public_key = keys.check_public_key(csr.public_key(), "CSR public key")
    else:
        if not key_out:
            raise CertgateError(
                "give --pubkey FILE, --csr FILE, or --key-out FILE to generate a key pair"
            )
        generated = keys.generate_private_key(key_type)
        public_key = generated.public_key()
    key_passphrase = _key_passphrase() if generated is not None else b""
    inst = app.installation()
    written: list[str] = []

    def deliver(certificate: x509.Certificate) -> None:
        # Runs before the user is committed: a key or certificate that cannot be written
        # leaves no user behind, and a user is never committed without them.
        if generated is not None and key_out:
            written.append(key_out)
            write_output(key_out, _private_key_bytes(generated, certificate,
                                                     inst.root_certificate, key_format,
                                                     key_passphrase, name), private=True)
        if out:
            written.append(out)
            write_output(out, certificate.public_bytes(Encoding.PEM))

    try:
        issued = inst.ca.add_user(name, email=email, public_key=public_key, days=days,
                               deliver=deliver)
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        raise
    if key_out:
        click.echo(f"private key written to {key_out} ({key_format}, encrypted)", err=True)
    click.echo(f"user {name}: identity certificate {issued.serial}", err=out is None)
    if out is None:
        click.echo(issued.certificate.public_bytes(Encoding.PEM).decode("ascii"), nl=False)


def _private_key_bytes(key: keys.PrivateKey, cert: x509.Certificate, root: x509.Certificate,
                       key_format: str, passphrase: bytes, name: str) -> bytes:
    if key_format == "pkcs12":
        return keys.pkcs12_bundle(key, cert, root, passphrase, name)
    if key_format == "pem":
        return keys.encrypted_pem(key, passphrase)
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        PrivateFormat,
    )

    return key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH,
                             BestAvailableEncryption(passphrase))


def _user_json(user: repo.User, certs: list[repo.IssuedCertificate], at: datetime) -> dict[
        str, object]:
    return {
        "name": user.name,
        "email": user.email,
        "created_at": user.created_at.isoformat(),
        "identity_certificates": [c.summary(at) for c in certs if c.kind == repo.IDENTITY],
        "attribute_certificates": [c.summary(at) for c in certs if c.kind == repo.ATTRIBUTE],
    }


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def user_list(app: AppContext, as_json: bool) -> None:
    """List users with the state of their newest identity certificate."""
    inst = app.installation()
    at = datetime.now(UTC)
    with inst.database.read() as session:
        rows = [(u, repo.certificates_of(session, u.name)) for u in repo.list_users(session)]
    if as_json:
        emit_json([_user_json(u, certs, at) for u, certs in rows])
        return
    say(f"{'NAME':<20} {'EMAIL':<28} {'IDENTITY':<10} {'ACS':>4}")
    for user, certs in rows:
        identities = [c for c in certs if c.kind == repo.IDENTITY]
        state = identities[-1].state_at(at) if identities else "none"
        valid_acs = sum(1 for c in certs if c.kind == repo.ATTRIBUTE and c.state_at(at) == "valid")
        say(f"{user.name:<20} {user.email or '-':<28} {state:<10} {valid_acs:>4}")


@user_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def user_show(app: AppContext, name: str, as_json: bool) -> None:
    """Show a user, their identity certificates and attribute certificates."""
    inst = app.installation()
    at = datetime.now(UTC)
    with inst.database.read() as session:
        user = repo.get_user(session, name)
        certs = repo.certificates_of(session, name)
    info = _user_json(user, certs, at)
    if as_json:
        emit_json(info)
        return
    say(f"user   {user.name}")
    say(f"email  {user.email or '-'}")
    for cert in certs:
        if cert.kind == repo.ATTRIBUTE:
            detail = f"{cert.subject}" + (f" targets={','.join(cert.targets)}"
                                          if cert.targets else "")
        else:
            detail = cert.subject
        say(f"  {cert.kind:<9} {cert.serial}  {cert.state_at(at):<13} "
            f"until {cert.not_after.isoformat()}  {detail}")
