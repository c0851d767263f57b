"""A root, an Attribute Authority, identities and ACs as stored rows: no database needed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.attribute_cert import AttributeCertificateIssuer
from ca.attributes import AttributeSet
from ca.authority import (
    build_attribute_authority_certificate,
    build_identity_certificate,
    build_root_certificate,
)
from ca.keys import PrivateKey, generate_private_key
from ca.serials import format_serial, new_serial
from certgate.access import TrustAnchors
from certgate.store.repositories import ATTRIBUTE, IDENTITY, IssuedCertificate

GATEWAY = "gw.test"
# The fake clocks start here. The PKI is built when a test first asks for it, with real
# validity from five minutes before that moment; a whole suite runs between import and
# that moment, so START is two hours ahead (one hour ahead failed when the run crossed
# the hour: the CA was then valid only from after START).
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
OPERATOR = AttributeSet(roles=("operator",))


def stored(serial: str, kind: str, user: str, der: bytes, not_before: datetime,
           not_after: datetime, holder_serial: str | None = None) -> IssuedCertificate:
    return IssuedCertificate(
        serial=serial, kind=kind, user=user, holder_serial=holder_serial, key_fingerprint=None,
        subject="", attributes=None, targets=None, not_before=not_before, not_after=not_after,
        issued_at=not_before, status="valid", revoked_at=None, revocation_reason=None, der=der,
    )


def revoked(row: IssuedCertificate, reason: str) -> IssuedCertificate:
    return replace(row, status="revoked", revoked_at=row.not_before, revocation_reason=reason)


@dataclass
class AccessPki:
    anchors: TrustAnchors
    issuer: AttributeCertificateIssuer
    identity_cert: x509.Certificate
    identity: IssuedCertificate
    aa_key: PrivateKey

    def ac(self, *, attributes: AttributeSet = OPERATOR, targets: Sequence[str] = (),
           not_before: datetime = START - timedelta(hours=1),
           not_after: datetime = START + timedelta(hours=8),
           holder: x509.Certificate | None = None,
           issuer: AttributeCertificateIssuer | None = None) -> IssuedCertificate:
        serial = new_serial()
        der = (issuer or self.issuer).issue(
            holder or self.identity_cert, attributes, not_before=not_before,
            not_after=not_after, targets=targets, serial=serial)
        return stored(format_serial(serial), ATTRIBUTE, "alice", der, not_before, not_after,
                      self.identity.serial)


def make_access_pki(aa_name: str = "test AA") -> AccessPki:
    root_key = generate_private_key("ed25519")
    root = build_root_certificate(root_key, "access test root", organization="Example")
    aa_key = generate_private_key("ed25519")
    aa = build_attribute_authority_certificate(root, root_key, aa_key.public_key(), aa_name)
    identity_cert = build_identity_certificate(
        root, root_key, generate_private_key("ed25519").public_key(), user_name="alice",
        email=None, not_before=START - timedelta(days=1), not_after=START + timedelta(days=30))
    identity = stored(format_serial(identity_cert.serial_number), IDENTITY, "alice",
                      identity_cert.public_bytes(Encoding.DER),
                      identity_cert.not_valid_before_utc, identity_cert.not_valid_after_utc)
    return AccessPki(TrustAnchors(root, aa, GATEWAY),
                     AttributeCertificateIssuer(aa, aa_key, gateway_name=GATEWAY),
                     identity_cert, identity, aa_key)
