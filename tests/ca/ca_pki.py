"""PKI helpers for the ``ca`` tests: a root, an AA, a user, an AC issuer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import cms
from cryptography import x509

from ca.attribute_cert import AttributeCertificateIssuer
from ca.attributes import AttributeSet, ClearanceLevel
from ca.authority import (
    build_attribute_authority_certificate,
    build_identity_certificate,
    build_root_certificate,
)
from ca.keys import KeyAlgorithm, PrivateKey, generate_private_key
from ca.signing import sign

# An hour boundary shortly after the real time: root and AA certificates (which
# start "now") are valid then, and every test sees the same whole-second instant.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
GATEWAY = "gw1"
ATTRS = AttributeSet(
    roles=("operator",),
    groups=("ops",),
    clearance=ClearanceLevel.SECRET,
    grants=("console.break",),
)


@dataclass
class Pki:
    """A root, an Attribute Authority, one user with an identity certificate."""

    algorithm: KeyAlgorithm
    root_key: PrivateKey
    root: x509.Certificate
    aa_key: PrivateKey
    aa: x509.Certificate
    user_key: PrivateKey
    identity: x509.Certificate
    issuer: AttributeCertificateIssuer

    def issue_identity(self, user_name: str = "bob", **kwargs: object) -> x509.Certificate:
        params: dict[str, object] = {
            "user_name": user_name,
            "email": None,
            "not_before": NOW - timedelta(days=1),
            "not_after": NOW + timedelta(days=30),
        }
        params.update(kwargs)
        return build_identity_certificate(
            self.root,
            self.root_key,
            generate_private_key().public_key(),
            **params,  # type: ignore[arg-type]
        )

    def issue_ac(self, **kwargs: object) -> bytes:
        params: dict[str, object] = {
            "not_before": NOW - timedelta(hours=1),
            "not_after": NOW + timedelta(hours=8),
        }
        params.update(kwargs)
        holder = params.pop("holder", self.identity)
        attributes = params.pop("attributes", ATTRS)
        return self.issuer.issue(holder, attributes, **params)  # type: ignore[arg-type]


def make_pki(algorithm: KeyAlgorithm) -> Pki:
    root_key = generate_private_key(algorithm)
    root = build_root_certificate(root_key, "certgate test root", organization="Example")
    aa_key = generate_private_key(algorithm)
    aa = build_attribute_authority_certificate(root, root_key, aa_key.public_key(), "certgate AA")
    user_key = generate_private_key("ed25519")
    identity = build_identity_certificate(
        root,
        root_key,
        user_key.public_key(),
        user_name="alice",
        email="alice@example.org",
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=365),
    )
    issuer = AttributeCertificateIssuer(aa, aa_key, gateway_name=GATEWAY)
    return Pki(algorithm, root_key, root, aa_key, aa, user_key, identity, issuer)


def resign_ac(
    der: bytes, key: PrivateKey, mutate: Callable[[cms.AttributeCertificateInfoV2], None]
) -> bytes:
    """Change the signed part of an AC with asn1crypto and sign it again with ``key``."""
    original = cms.AttributeCertificateV2.load(der)
    info = cms.AttributeCertificateInfoV2.load(original["ac_info"].dump())
    mutate(info)
    tbs = info.dump(force=True)
    return cms.AttributeCertificateV2(
        {
            "ac_info": cms.AttributeCertificateInfoV2.load(tbs),
            "signature_algorithm": original["signature_algorithm"],
            "signature": sign(key, tbs),
        }
    ).dump()
