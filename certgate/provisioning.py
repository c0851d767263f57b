"""Creating a new installation: keys, certificates, config and a migrated database.

Everything is built in a staging directory beside the target and renamed into place at the
end, so a failed ``certgate init`` (wrong database URL, full disk) leaves nothing half made.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import authority as builders
from ca import keys, ssh_certs
from ca.files import write_atomically
from ca.serials import format_serial
from certgate.audit.chain import AuditEvent
from certgate.audit.log import AuditLog
from certgate.errors import ConflictError, HomeError
from certgate.home import Home, HomeConfig
from certgate.store.database import Database, sqlite_url


@dataclass(frozen=True)
class InitOptions:
    gateway_name: str = "certgate-gateway"
    organisation: str = "certgate"
    database_url: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 2222
    key_algorithm: keys.KeyAlgorithm = "ed25519"
    crl_url: str | None = None


@dataclass(frozen=True)
class InitResult:
    home: Home
    root_serial: str
    aa_serial: str
    host_serial: str
    audit_serial: str


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    path.chmod(0o644)


def host_names(options: InitOptions) -> list[str]:
    """Names the gateway's host certificate is valid for: what users type after ``ssh``."""
    names = [options.gateway_name, options.listen_host, "localhost", "127.0.0.1"]
    return list(dict.fromkeys(n for n in names if n and n != "0.0.0.0"))


def known_hosts_line(home: Home, config: HomeConfig) -> str:
    """``@cert-authority`` for the names the host certificate carries, on the gateway port."""
    port = config.listen_port
    names = host_names(InitOptions(gateway_name=config.gateway_name,
                                   listen_host=config.listen_host))
    patterns = ",".join(n if port == 22 else f"[{n}]:{port}" for n in names)
    ca_line = " ".join(home.ssh_ca_pub.read_text("ascii").split()[:2])
    return f"@cert-authority {patterns} {ca_line}"


def create_installation(
    home: Home, options: InitOptions, *, passphrase: bytes | None, actor: str
) -> InitResult:
    if home.exists():
        raise ConflictError(f"{home.root} already holds a certgate installation")
    if home.root.exists() and any(home.root.iterdir()):
        raise ConflictError(f"{home.root} exists and is not empty; choose another --home")
    home.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".certgate-init-", dir=home.root.parent))
    try:
        result = _populate(Home(staging), home, options, passphrase=passphrase, actor=actor)
        if home.root.exists():
            home.root.rmdir()
        os.replace(staging, home.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _populate(
    staging: Home, final: Home, options: InitOptions, *, passphrase: bytes | None, actor: str
) -> InitResult:
    staging.root.chmod(0o700)
    for directory in (staging.ca_dir, staging.gateway_dir, staging.recordings_dir):
        directory.mkdir(mode=0o700)

    root_key = keys.generate_private_key(options.key_algorithm)
    root = builders.build_root_certificate(root_key, f"{options.organisation} root CA")
    aa_key = keys.generate_private_key(options.key_algorithm)
    aa = builders.build_attribute_authority_certificate(
        root, root_key, aa_key.public_key(), f"{options.organisation} attribute authority"
    )
    host_key = keys.generate_private_key("ed25519")
    host = builders.build_host_certificate(
        root, root_key, host_key.public_key(), options.gateway_name
    )
    ssh_ca_key = keys.generate_private_key("ed25519")
    upstream_key = keys.generate_private_key("ed25519")
    host_ssh_cert = ssh_certs.build_host_certificate(
        ssh_ca_key,
        host_key.public_key(),
        host_names=host_names(options),
        serial=ssh_certs.new_ssh_serial(),
        not_before=host.not_valid_before_utc,
        not_after=host.not_valid_after_utc,
    )
    audit_key = keys.generate_private_key("ed25519")
    audit = builders.build_signing_certificate(
        root, root_key, audit_key.public_key(), f"{options.gateway_name} audit"
    )

    for path, key in (
        (staging.root_key, root_key),
        (staging.aa_key, aa_key),
        (staging.host_key, host_key),
        (staging.audit_key, audit_key),
        (staging.ssh_ca_key, ssh_ca_key),
        (staging.upstream_key, upstream_key),
    ):
        keys.write_private_key(path, key, passphrase)
    for path, cert in (
        (staging.root_cert, root),
        (staging.aa_cert, aa),
        (staging.host_cert, host),
        (staging.audit_cert, audit),
    ):
        _write_cert(path, cert)

    staging.ssh_ca_pub.write_text(
        ssh_certs.openssh_line(ssh_ca_key.public_key(), f"{options.gateway_name} SSH CA") + "\n"
    )
    staging.host_ssh_cert.write_bytes(host_ssh_cert)
    staging.upstream_known_hosts.touch(mode=0o600)

    config = HomeConfig(
        gateway_name=options.gateway_name,
        database_url=options.database_url,
        listen_host=options.listen_host,
        listen_port=options.listen_port,
        encrypted_keys=passphrase is not None,
        crl_url=options.crl_url,
    )
    # A database password in the URL makes the config a secret (better: database_password_file
    # or CERTGATE_DATABASE_PASSWORD).
    write_atomically(staging.config_path, config.to_toml().encode("utf-8"),
                     0o600 if config.holds_password else 0o644)

    if options.database_url is None:
        # SQLite gives its -wal and -shm files the database file's mode: keep all three 0600.
        staging.sqlite_path.touch(mode=0o600)
    url = options.database_url or sqlite_url(staging.sqlite_path)
    database = Database(url)
    try:
        database.migrate()
        serials = {
            "root": format_serial(root.serial_number),
            "aa": format_serial(aa.serial_number),
            "host": format_serial(host.serial_number),
            "audit": format_serial(audit.serial_number),
        }
        AuditLog(database).record(
            AuditEvent(
                event_type="ca.init",
                actor=actor,
                outcome="ok",
                serial=serials["root"],
                details={
                    "home": str(final.root),
                    "gateway_name": options.gateway_name,
                    "serials": serials,
                    "key_algorithm": options.key_algorithm,
                    "encrypted_keys": passphrase is not None,
                },
            )
        )
    finally:
        database.dispose()
    if not staging.config_path.exists():
        raise HomeError("installation staging vanished")
    return InitResult(final, serials["root"], serials["aa"], serials["host"], serials["audit"])
