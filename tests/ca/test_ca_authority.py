from datetime import UTC, datetime, timedelta

import pytest
from ca_pki import NOW, Pki
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.authority import (
    build_host_certificate,
    build_identity_certificate,
    build_signing_certificate,
    identity_user_name,
)
from ca.errors import MalformedInputError
from ca.keys import generate_private_key


def _ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def test_root_is_a_self_signed_ca_limited_to_end_entities(any_pki: Pki) -> None:
    root = any_pki.root
    root.verify_directly_issued_by(root)
    bc = _ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0  # type: ignore[attr-defined]
    ku = _ext(root, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign  # type: ignore[attr-defined]
    assert not ku.value.digital_signature  # type: ignore[attr-defined]


def test_attribute_authority_is_not_a_ca(any_pki: Pki) -> None:
    aa = any_pki.aa
    aa.verify_directly_issued_by(any_pki.root)
    assert _ext(aa, x509.BasicConstraints).value.ca is False  # type: ignore[attr-defined]
    ku = _ext(aa, x509.KeyUsage).value
    assert ku.digital_signature and ku.crl_sign and not ku.key_cert_sign  # type: ignore[attr-defined]
    assert aa.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example"
    _ext(aa, x509.AuthorityKeyIdentifier)


def test_identity_certificate_profile(pki: Pki) -> None:
    cert = pki.identity
    assert cert.version == x509.Version.v3
    assert cert.subject.rfc4514_string() == "O=Example,CN=alice"
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.org"]  # type: ignore[attr-defined]
    assert identity_user_name(cert) == "alice"
    assert ExtendedKeyUsageOID.CLIENT_AUTH in _ext(cert, x509.ExtendedKeyUsage).value  # type: ignore[operator]
    assert _ext(cert, x509.KeyUsage).critical
    assert _ext(cert, x509.BasicConstraints).critical
    assert cert.not_valid_before_utc == NOW - timedelta(days=1)


def test_identity_validity_is_truncated_to_seconds_and_serial_can_be_chosen(pki: Pki) -> None:
    start = datetime(2026, 1, 1, 12, 0, 0, 987654, tzinfo=UTC)
    cert = pki.issue_identity(not_before=start, not_after=start + timedelta(days=1), serial=0x4F0C)
    assert cert.not_valid_before_utc == start.replace(microsecond=0)
    assert cert.serial_number == 0x4F0C


@pytest.mark.parametrize("name", ["Alice", "", "-x", "a b", "a/b", "x" * 65, "ü"])
def test_invalid_user_names_are_refused(pki: Pki, name: str) -> None:
    with pytest.raises(MalformedInputError, match="invalid user name"):
        pki.issue_identity(name)


def test_naive_times_and_inverted_windows_are_refused(pki: Pki) -> None:
    with pytest.raises(MalformedInputError, match="timezone-aware"):
        pki.issue_identity(not_before=datetime(2026, 1, 1))
    with pytest.raises(MalformedInputError, match="before it starts"):
        pki.issue_identity(not_before=NOW, not_after=NOW)
    with pytest.raises(MalformedInputError, match="e-mail"):
        pki.issue_identity(email="not an address")


def test_rsa_and_ecdsa_roots_sign_with_sha256(pki: Pki) -> None:
    for algorithm in ("ecdsa-p256", "rsa-3072"):
        from ca.authority import build_root_certificate

        root = build_root_certificate(generate_private_key(algorithm), "r")  # type: ignore[arg-type]
        assert root.signature_hash_algorithm is not None
        assert root.signature_hash_algorithm.name == "sha256"
    assert pki.root.signature_hash_algorithm is None  # Ed25519


def test_host_and_signing_certificates(pki: Pki) -> None:
    host = build_host_certificate(
        pki.root, pki.root_key, generate_private_key().public_key(), "gw.example.org"
    )
    eku = _ext(host, x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku  # type: ignore[operator]
    assert _ext(host, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [  # type: ignore[attr-defined]
        "gw.example.org"
    ]
    with pytest.raises(MalformedInputError, match="host name"):
        build_host_certificate(
            pki.root, pki.root_key, generate_private_key().public_key(), "bad host"
        )
    signer = build_signing_certificate(
        pki.root, pki.root_key, generate_private_key().public_key(), "audit"
    )
    ku = _ext(signer, x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment  # type: ignore[attr-defined]
    assert _ext(signer, x509.BasicConstraints).value.ca is False  # type: ignore[attr-defined]


def test_identity_certificate_with_unsupported_key_is_refused(pki: Pki) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed448

    with pytest.raises(MalformedInputError, match="not supported"):
        build_identity_certificate(
            pki.root,
            pki.root_key,
            ed448.Ed448PrivateKey.generate().public_key(),  # type: ignore[arg-type]
            user_name="bob",
            email=None,
            not_before=NOW,
            not_after=NOW + timedelta(days=1),
        )
