"""The plain data the access core takes and returns: credentials, identities, grants.

Nothing here does I/O; every type is immutable so a decision can be cached, compared,
audited and explained without surprises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ca.attributes import AttributeSet
from certgate.errors import CertgateError
from certgate.policy import Decision, Policy
from certgate.store.records import VM

EMPTY_POLICY = Policy(rules=(), description="no policy applied: everything is denied")


class AccessRefused(CertgateError):
    """Authentication or authorisation failed; the message is safe to show the user."""


@dataclass(frozen=True)
class Credential:
    """What the client proved possession of during SSH authentication."""

    kind: str  # key | openssh-cert | x509
    key_fingerprint: str  # SHA-256 of the SubjectPublicKeyInfo of the authenticating key
    ssh_fingerprint: str  # SHA256:... as ssh-keygen shows it, for audit readers
    ssh_cert_blob: bytes | None = None
    x509_der: bytes | None = None


@dataclass(frozen=True)
class Identity:
    """Who a credential belongs to: a user and the identity certificate that says so."""

    user: str
    serial: str
    not_after: datetime
    credential: Credential
    ssh_cert_serial: str | None = None
    """For an OpenSSH-certificate login: the certificate's serial (it is re-checked too)."""


class RejectionReason(StrEnum):
    """Why an attribute certificate was set aside, in the order they are checked."""

    REVOKED = "revoked"
    HOLDER_REVOKED = "holder-revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    INVALID = "invalid"  # signature, issuer, holder binding, extensions, gateway targeting
    WRONG_VM = "wrong-vm"


@dataclass(frozen=True)
class Rejection:
    """One AC set aside, with a message that tells the truth about why."""

    serial: str
    reason: RejectionReason
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Approval:
    """The outcome of approving a holder's ACs for one VM (or the gateway) at one time."""

    attributes: AttributeSet
    approved: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    valid_until: datetime | None
    """When the approval can next change by time alone (an approved AC's notAfter, or a
    not-yet-valid AC's notBefore); None when nothing is pending."""


EMPTY_APPROVAL = Approval(AttributeSet(), (), (), None)


@dataclass(frozen=True)
class Grant:
    """An access decision together with everything it was based on."""

    identity: Identity
    vm: VM | None
    approval: Approval
    decision: Decision
    policy_version: int
    decided_at: datetime
    valid_until: datetime | None = None
    """The next time this decision may change by time alone (identity or AC expiry, a time
    window's edge); the gateway re-decides live sessions then, or when the store changes."""
    change_counter: int = 0
    """The store's change counter this decision was read at."""

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def attributes(self) -> AttributeSet:
        return self.approval.attributes

    @property
    def attribute_serials(self) -> tuple[str, ...]:
        return self.approval.approved

    @property
    def rejected_attribute_certificates(self) -> tuple[str, ...]:
        return tuple(str(r) for r in self.approval.rejected)

    def permits(self, privilege: str) -> bool:
        return self.decision.allowed and privilege in self.decision.privileges
