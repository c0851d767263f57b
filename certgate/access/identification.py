"""Is an identity certificate (and the OpenSSH certificate it came through) good now?

Pure, given the stored rows, the root and a time. The structural checks of an identity
certificate (issuer, signature, clientAuth, not a CA) cannot change, so they are remembered
per serial; revocation and validity are judged on every call, from the caller's snapshot.
"""

from __future__ import annotations

import threading
from datetime import datetime

from cryptography import x509

from ca.errors import VerificationError
from ca.timeutil import format_time
from ca.verify import verify_identity_certificate
from certgate.store.records import IssuedCertificate


def _revocation_note(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


class VerifiedIdentities:
    """Serials of identity certificates whose signature and structure were checked."""

    def __init__(self) -> None:
        self._good: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def check(self, row: IssuedCertificate, root: x509.Certificate) -> str | None:
        with self._lock:
            if self._good.get(row.serial) == row.der:
                return None
        try:
            cert = x509.load_der_x509_certificate(row.der)
            # Checked at its own notBefore: time is judged separately, every time.
            verify_identity_certificate(cert, root, at=cert.not_valid_before_utc)
        except (VerificationError, ValueError) as exc:
            return str(exc)
        with self._lock:
            if len(self._good) > 100_000:
                self._good.clear()
            self._good[row.serial] = row.der
        return None


def identity_problem(
    row: IssuedCertificate | None,
    *,
    root: x509.Certificate,
    at: datetime,
    verified: VerifiedIdentities,
    user_disabled: bool = False,
) -> str | None:
    """None while ``row`` identifies its user at ``at``; otherwise why not, truthfully."""
    if row is None:
        return "the identity certificate is no longer on record"
    what = f"identity certificate {row.serial}"
    if row.kind != "identity":
        return f"{row.serial} is not an identity certificate"
    if row.status == "revoked":
        return f"{what} was revoked{_revocation_note(row.revocation_reason)}"
    if user_disabled:
        return f"user {row.user} is disabled"
    if at >= row.not_after:
        return f"{what} expired at {format_time(row.not_after)}"
    if at < row.not_before:
        return f"{what} is not valid before {format_time(row.not_before)}"
    return verified.check(row, root)


def ssh_certificate_problem(row: IssuedCertificate | None, at: datetime) -> str | None:
    """None while the OpenSSH certificate a user logged in with stands; otherwise why not."""
    if row is None:
        return "the OpenSSH certificate is no longer on record"
    if row.status == "revoked":
        return (f"OpenSSH certificate {row.serial} was revoked"
                f"{_revocation_note(row.revocation_reason)}")
    if at >= row.not_after:
        return f"OpenSSH certificate {row.serial} expired at {format_time(row.not_after)}"
    return None
