"""CA admin commands: init, ca, user, attr, revoke, crl, db."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import attribute_cert, keys
from ca.attributes import parse_attribute_assignments
from ca.errors import MalformedInputError
from ca.files import write_atomically
from ca.serials import format_serial, parse_serial
from certgate.authority import GrantRequest, Installation, cli_actor
from certgate.cli.main import AppContext, CommandGroup, emit_json, fail, pass_app
from certgate.errors import CertgateError
from certgate.home import read_passphrase
from certgate.policy.values import parse_duration
from certgate.store import repositories as repo
from certgate.store.database import Database

KEY_PASSPHRASE_ENV = "CERTGATE_KEY_PASSPHRASE"


def write_output(path: str | None, data: bytes, *, private: bool = False) -> None:
    """Write to a file atomically (0600 when private), or to stdout when no path is given."""
    if path is None or path == "-":
        if data.isascii():
            click.echo(data.decode("ascii"), nl=False)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return
    try:
        write_atomically(Path(path), data, 0o600 if private else 0o644)
    except OSError as exc:
        raise CertgateError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_input(path: str, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CertgateError(f"cannot read {what} {path}: {exc.strerror}") from exc


def parse_duration_option(text: str, option: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CertgateError(f"{option}: {exc}") from exc


def add_commands(cli: click.Group) -> None:
    for command in (init, ca_group, user_group, attr_group, revoke, crl, db_group):
        cli.add_command(command)


# -- init -------------------------------------------------------------------------------------


@click.command()
@click.option("--gateway-name", default="certgate-gateway", show_default=True,
              help="Name the gateway is known by (host certificate, AC targeting).")
@click.option("--organisation", default="certgate", show_default=True)
@click.option("--database-url", default=None,
              help="SQLAlchemy URL (default: SQLite in the home). PostgreSQL: "
                   "postgresql+psycopg://user@host/db")
@click.option("--listen", default="127.0.0.1:2222", show_default=True, metavar="HOST:PORT")
@click.option("--key-type", type=click.Choice(keys.KEY_ALGORITHMS), default="ed25519",
              show_default=True, help="Algorithm of the root and AA keys.")
@click.option("--crl-url", default=None, help="URL published in ACs' CRL distribution points.")
@click.option("--no-passphrase", is_flag=True,
              help="Store private keys unencrypted (only for throwaway installations).")
@pass_app
def init(app: AppContext, gateway_name: str, organisation: str, database_url: str | None,
         listen: str, key_type: keys.KeyAlgorithm, crl_url: str | None,
         no_passphrase: bool) -> None:
    """Create a new installation: config, database, root CA, AA and gateway keys."""
    from certgate.provisioning import InitOptions, create_installation  # only init needs it

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise CertgateError(f"--listen wants HOST:PORT, not {listen!r}")
    passphrase = None if no_passphrase else read_passphrase(confirm=True)
    result = create_installation(
        app.home,
        InitOptions(gateway_name=gateway_name, organisation=organisation,
                    database_url=database_url, listen_host=host, listen_port=int(port),
                    key_algorithm=key_type, crl_url=crl_url),
        passphrase=passphrase,
        actor=cli_actor(),
    )
    click.echo(f"created certgate installation in {result.home.root}")
    click.echo(f"  root CA serial   {result.root_serial}")
    click.echo(f"  AA serial        {result.aa_serial}")
    click.echo(f"  gateway host     {result.host_serial}")
    click.echo(f"  audit signer     {result.audit_serial}")


# -- ca ---------------------------------------------------------------------------------------


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
            click.echo(f"  {key:<11} {value}")


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
        write_output(out, known_hosts_line(inst).encode() + b"\n")
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


def known_hosts_line(inst: Installation) -> str:
    """``@cert-authority`` for the names the host certificate carries, on the gateway port."""
    port = inst.config.listen_port
    from certgate.provisioning import InitOptions, host_names

    names = host_names(InitOptions(gateway_name=inst.config.gateway_name,
                                   listen_host=inst.config.listen_host))
    patterns = ",".join(n if port == 22 else f"[{n}]:{port}" for n in names)
    ca_line = " ".join(inst.home.ssh_ca_pub.read_text("ascii").split()[:2])
    return f"@cert-authority {patterns} {ca_line}"


# -- users ------------------------------------------------------------------------------------


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
        issued = inst.add_user(name, email=email, public_key=public_key, days=days,
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
    click.echo(f"{'NAME':<20} {'EMAIL':<28} {'IDENTITY':<10} {'ACS':>4}")
    for user, certs in rows:
        identities = [c for c in certs if c.kind == repo.IDENTITY]
        state = identities[-1].state_at(at) if identities else "none"
        valid_acs = sum(1 for c in certs if c.kind == repo.ATTRIBUTE and c.state_at(at) == "valid")
        click.echo(f"{user.name:<20} {user.email or '-':<28} {state:<10} {valid_acs:>4}")


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
    click.echo(f"user   {user.name}")
    click.echo(f"email  {user.email or '-'}")
    for cert in certs:
        if cert.kind == repo.ATTRIBUTE:
            detail = f"{cert.subject}" + (f" targets={','.join(cert.targets)}"
                                          if cert.targets else "")
        else:
            detail = cert.subject
        click.echo(f"  {cert.kind:<9} {cert.serial}  {cert.state_at(at):<13} "
                   f"until {cert.not_after.isoformat()}  {detail}")


# -- attribute certificates ---------------------------------------------------------------------


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
    issued = inst.grant_many([
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
    click.echo(f"{'SERIAL':<41} {'USER':<16} {'STATE':<13} {'UNTIL':<26} ATTRIBUTES")
    for c in certs:
        targets = f" targets={','.join(c.targets)}" if c.targets else ""
        click.echo(f"{c.serial:<41} {c.user:<16} {c.state_at(at):<13} "
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
        check = inst.check_attribute_certificate(data, vm=vm)
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
        click.echo(f"serial      {check.serial}")
        click.echo(f"holder      {check.holder_serial} ({check.holder_user or 'unknown'})")
        click.echo(f"attributes  {check.attributes.describe() if check.attributes else '-'}")
        click.echo(f"targets     {', '.join(check.targets) or '(any)'}")
        click.echo(f"validity    {check.not_before.isoformat()} .. {check.not_after.isoformat()}")
    if not check.valid:
        fail(check.error or "invalid")
    if not as_json:
        click.echo("valid")


# -- revocation -------------------------------------------------------------------------------


@click.command()
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              help="RFC 5280 reason: keyCompromise, affiliationChanged, superseded, "
                   "cessationOfOperation, privilegeWithdrawn, ...")
@pass_app
def revoke(app: AppContext, serial: str, reason: str) -> None:
    """Revoke an identity or attribute certificate; takes effect at once."""
    inst = app.installation()
    revoked = inst.revoke(serial, reason=reason)
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
    identity_crl, attribute_crl = inst.crls()
    encoding = Encoding.DER if der else Encoding.PEM
    if out or ac_out:
        if out:
            write_output(out, identity_crl.public_bytes(encoding))
        if ac_out:
            write_output(ac_out, attribute_crl.public_bytes(encoding))
        return
    write_output(None, identity_crl.public_bytes(Encoding.PEM)
                 + attribute_crl.public_bytes(Encoding.PEM))


# -- database ---------------------------------------------------------------------------------


@click.group("db", cls=CommandGroup)
def db_group() -> None:
    """Database schema maintenance."""


@db_group.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Migrate the database to the schema this certgate needs."""
    app.home.require()
    database = Database(app.home.database_url())
    try:
        database.migrate()
    finally:
        database.dispose()
    click.echo("database schema is current")
