"""Signed checkpoints of the audit chain head.

A hash chain alone shows edits in the middle, but whoever can write the database can also cut
entries off the end and move the head row back: what remains is still a valid chain. A
checkpoint is the gateway's audit key's signature over (chain id, seq, entry hash, time); the
key lives outside the database, so a checkpoint cannot be forged by a database writer, and a
chain that no longer reaches a signed seq (or has another hash there) shows that it was cut or
rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import keys
from ca.serials import format_serial
from certgate.audit.chain import canonical_json, format_ts
from certgate.audit.log import lock_head
from certgate.errors import AuditError
from certgate.store.database import Database
from certgate.store.schema import AuditCheckpointRow

if TYPE_CHECKING:
    from certgate.installation import Installation

CHECKPOINT_FORMAT = "certgate-audit-checkpoint/1"


def checkpoint_message(*, chain_id: str, seq: int, entry_hash: str, created_at: datetime) -> bytes:
    """The exact bytes a checkpoint signature covers (canonical JSON, see docs/audit.md)."""
    return canonical_json(
        {
            "format": CHECKPOINT_FORMAT,
            "chain": chain_id,
            "seq": seq,
            "entry_hash": entry_hash,
            "created_at": format_ts(created_at),
        }
    ).encode("utf-8")


def chain_id_of(root_certificate: x509.Certificate) -> str:
    """A chain is named by its installation's root serial, so checkpoints cannot be transplanted
    from another installation's database."""
    return format_serial(root_certificate.serial_number)


@dataclass(frozen=True)
class Checkpoint:
    id: int
    seq: int
    entry_hash: str
    created_at: datetime
    signer_serial: str
    signature: bytes


def _checkpoint(row: AuditCheckpointRow) -> Checkpoint:
    return Checkpoint(row.id, row.seq, row.entry_hash, row.created_at, row.signer_serial,
                      bytes(row.signature))


class CheckpointSigner:
    """The audit key and certificate, loaded once (the gateway signs every few minutes)."""

    def __init__(self, key: ed25519.Ed25519PrivateKey, certificate: x509.Certificate,
                 chain_id: str) -> None:
        self.key = key
        self.certificate = certificate
        self.chain_id = chain_id
        self.serial = format_serial(certificate.serial_number)

    @classmethod
    def load(cls, key_path: Path, cert_path: Path, passphrase: bytes | None,
             root_certificate: x509.Certificate) -> CheckpointSigner:
        key = keys.read_private_key(key_path, passphrase)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise AuditError(f"audit key {key_path} is not an Ed25519 key")
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise AuditError(f"cannot read audit certificate {cert_path}: {exc}") from exc
        if certificate.public_key() != key.public_key():
            raise AuditError(f"audit certificate {cert_path} does not match key {key_path}")
        return cls(key, certificate, chain_id_of(root_certificate))

    def sign_in(self, session: Session, *, now: datetime | None = None) -> Checkpoint:
        """Sign the current head inside an open write transaction (the head stays locked)."""
        head = lock_head(session)
        created_at = now or datetime.now(UTC)
        message = checkpoint_message(chain_id=self.chain_id, seq=head.seq,
                                     entry_hash=head.entry_hash, created_at=created_at)
        row = AuditCheckpointRow(seq=head.seq, entry_hash=head.entry_hash, created_at=created_at,
                                 signer_serial=self.serial, signature=self.key.sign(message))
        session.add(row)
        session.flush()
        return _checkpoint(row)

    def sign(self, database: Database) -> Checkpoint:
        with database.write() as session:
            return self.sign_in(session)


def write_checkpoint(installation: Installation,
                     signer: CheckpointSigner | None = None) -> Checkpoint:
    """Sign and store a checkpoint of the current head: for the gateway (periodically and at
    shutdown) and ``certgate audit checkpoint``. Pass a loaded ``signer`` to avoid re-reading
    the encrypted key each time."""
    if signer is None:
        signer = load_signer(installation)
    return signer.sign(installation.database)


def load_signer(installation: Installation) -> CheckpointSigner:
    home = installation.home
    return CheckpointSigner.load(home.audit_key, home.audit_cert, installation.passphrase(),
                                 installation.root_certificate)


def list_checkpoints(session: Session) -> list[Checkpoint]:
    rows = session.execute(select(AuditCheckpointRow).order_by(AuditCheckpointRow.id)).scalars()
    return [_checkpoint(row) for row in rows]


class CheckpointVerifier:
    """Checks checkpoint signatures against the audit certificate, itself checked against the
    root: a database writer could otherwise swap in a key of their own."""

    def __init__(self, audit_certificate: x509.Certificate,
                 root_certificate: x509.Certificate) -> None:
        if audit_certificate.issuer != root_certificate.subject:
            raise AuditError("the audit certificate is not issued by this installation's root")
        try:
            audit_certificate.verify_directly_issued_by(root_certificate)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise AuditError("the audit certificate's signature does not verify with the "
                             "root key") from exc
        public_key = audit_certificate.public_key()
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise AuditError("the audit certificate does not hold an Ed25519 key")
        self.public_key = public_key
        self.serial = format_serial(audit_certificate.serial_number)
        self.chain_id = chain_id_of(root_certificate)

    def problem(self, checkpoint: Checkpoint) -> str | None:
        """Why the checkpoint's signature is not good, or None when it is."""
        if checkpoint.signer_serial != self.serial:
            return (f"checkpoint {checkpoint.id} is signed by certificate "
                    f"{checkpoint.signer_serial}, not by the audit certificate {self.serial}")
        message = checkpoint_message(chain_id=self.chain_id, seq=checkpoint.seq,
                                     entry_hash=checkpoint.entry_hash,
                                     created_at=checkpoint.created_at)
        try:
            self.public_key.verify(checkpoint.signature, message)
        except InvalidSignature:
            return (f"checkpoint {checkpoint.id} has an invalid signature "
                    "(the checkpoint row was altered or forged)")
        return None
