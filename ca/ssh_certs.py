"""OpenSSH certificates: short-lived user certificates and the gateway's host certificate.

A separate SSH CA key signs them (not the X.509 root), so an OpenSSH trust anchor in users'
known_hosts never doubles as the anchor of the X.509 hierarchy. The user certificate's key id
names the identity certificate it was issued for; the gateway resolves identity from that
key id and its own records, never from the principals or the SSH login name.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from ca.errors import MalformedInputError
from ca.keys import PrivateKey, PublicKey, check_public_key
from ca.timeutil import check_window

if TYPE_CHECKING:
    import asyncssh

# asyncssh is imported where it is used: it costs ~0.3 s, and most commands that import this
# module (policy check, attr grant) never touch an SSH key.

USER_PRINCIPAL = "certgate"
"""The one principal every certgate user certificate carries; identity is in the key id."""


def ssh_private_key(key: PrivateKey) -> asyncssh.SSHKey:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    import asyncssh

    return asyncssh.import_private_key(pem)


def ssh_public_key(key: PublicKey) -> asyncssh.SSHKey:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import asyncssh

    return asyncssh.import_public_key(der)


def public_key_from_ssh(key: asyncssh.SSHKey) -> PublicKey:
    """The cryptography public key inside an asyncssh key (for SPKI fingerprints)."""
    import asyncssh

    try:
        der = key.export_public_key("pkcs8-der")
        loaded = serialization.load_der_public_key(der)
    except (asyncssh.KeyExportError, ValueError) as exc:
        raise MalformedInputError(f"unsupported SSH key type {key.get_algorithm()}") from exc
    return check_public_key(loaded, "SSH key")


def openssh_line(key: PublicKey, comment: str = "") -> str:
    line = ssh_public_key(key).export_public_key("openssh").decode("ascii").strip()
    return f"{line} {comment}".strip()


def ssh_fingerprint(key: PublicKey) -> str:
    """The ``SHA256:...`` fingerprint ``ssh-keygen -l`` prints, for people reading audits."""
    return ssh_public_key(key).get_fingerprint("sha256")


def build_user_certificate(
    ca_key: PrivateKey,
    user_key: PublicKey,
    *,
    key_id: str,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    source_addresses: Sequence[str] = (),
) -> bytes:
    """An OpenSSH user certificate (``-cert.pub`` line); serial must fit 64 bits."""
    start, end = check_window(not_before, not_after)
    if not 0 < serial < 2**64:
        raise MalformedInputError("OpenSSH certificate serials are 64-bit")
    options: dict[str, object] = {}
    if source_addresses:
        options["source-address"] = list(source_addresses)
    cert = ssh_private_key(ca_key).generate_user_certificate(
        ssh_public_key(user_key),
        key_id,
        principals=[USER_PRINCIPAL],
        serial=serial,
        valid_after=start.timestamp(),
        valid_before=end.timestamp(),
        permit_pty=True,
        permit_agent_forwarding=False,
        permit_port_forwarding=False,
        permit_x11_forwarding=False,
        permit_user_rc=False,
        **options,  # type: ignore[arg-type]
    )
    line: bytes = cert.export_certificate("openssh")
    return line


def build_host_certificate(
    ca_key: PrivateKey,
    host_key: PublicKey,
    *,
    host_names: Sequence[str],
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    start, end = check_window(not_before, not_after)
    cert = ssh_private_key(ca_key).generate_host_certificate(
        ssh_public_key(host_key),
        host_names[0],
        principals=list(host_names),
        serial=serial,
        valid_after=start.timestamp(),
        valid_before=end.timestamp(),
    )
    line: bytes = cert.export_certificate("openssh")
    return line


def new_ssh_serial() -> int:
    """A random 63-bit serial: OpenSSH certificate serials are 64-bit integers."""
    return secrets.randbits(63) | 1
