"""What the store hands out: plain records, importable without SQLAlchemy.

``certgate policy check`` and the access core read these through plain SQL
(``certgate.store.access_reads``); the rest of the store returns the same records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

IDENTITY = "identity"
ATTRIBUTE = "attribute"
SSH = "ssh"


@dataclass(frozen=True)
class User:
    name: str
    email: str | None
    created_at: datetime
    disabled_at: datetime | None = None
    removed_at: datetime | None = None

    @property
    def state(self) -> str:
        """active, disabled or removed."""
        if self.removed_at is not None:
            return "removed"
        return "disabled" if self.disabled_at is not None else "active"


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    kind: str
    user: str
    holder_serial: str | None
    key_fingerprint: str | None
    subject: str
    attributes: dict[str, Any] | None
    targets: list[str] | None
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    status: str
    revoked_at: datetime | None
    revocation_reason: str | None
    der: bytes
    user_id: int = 0

    def state_at(self, at: datetime) -> str:
        """revoked, expired, not-yet-valid or valid: what an operator wants to see."""
        if self.status == "revoked":
            return "revoked"
        if at >= self.not_after:
            return "expired"
        if at < self.not_before:
            return "not-yet-valid"
        return "valid"

    def summary(self, at: datetime) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "kind": self.kind,
            "user": self.user,
            "holder_serial": self.holder_serial,
            "subject": self.subject,
            "attributes": self.attributes,
            "targets": self.targets,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "issued_at": self.issued_at.isoformat(),
            "state": self.state_at(at),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
        }


@dataclass(frozen=True)
class Holder:
    """The identity certificate an attribute certificate is bound to."""

    serial: str
    der: bytes
    user_id: int


@dataclass(frozen=True)
class VM:
    name: str
    console_uri: str
    labels: dict[str, str]
    created_at: datetime
    keep: str | None = None
    escape: str | None = None


@dataclass(frozen=True)
class PolicyVersion:
    version: int
    source: str
    source_name: str
    fingerprint: str
    applied_at: datetime
    applied_by: str


def now() -> datetime:
    return datetime.now(UTC)
