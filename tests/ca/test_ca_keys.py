import os
import stat
from pathlib import Path

import pytest
from ca_pki import Pki
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from ca.errors import KeyFileError, MalformedInputError
from ca.keys import (
    encrypted_pem,
    generate_private_key,
    load_csr,
    load_public_key,
    pkcs12_bundle,
    read_private_key,
    spki_sha256,
    write_private_key,
)


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256", "rsa-3072"])
def test_generated_keys_round_trip_through_encrypted_files(tmp_path: Path, algorithm: str) -> None:
    key = generate_private_key(algorithm)  # type: ignore[arg-type]
    path = tmp_path / "ca.key"
    write_private_key(path, key, b"s3cret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = read_private_key(path, b"s3cret")
    assert spki_sha256(loaded.public_key()) == spki_sha256(key.public_key())


def test_unencrypted_only_when_passphrase_is_none(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_private_key(path, generate_private_key(), None)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    read_private_key(path, None)
    with pytest.raises(MalformedInputError):
        write_private_key(path, generate_private_key(), b"")


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_private_key(path, generate_private_key(), b"a")
    write_private_key(path, generate_private_key(), b"b")
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]
    read_private_key(path, b"b")


def test_wrong_passphrase_is_named(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_private_key(path, generate_private_key(), b"right")
    with pytest.raises(KeyFileError, match=f"wrong passphrase for {path}"):
        read_private_key(path, b"wrong")
    with pytest.raises(KeyFileError, match="passphrase is required"):
        read_private_key(path, None)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_private_key(path, generate_private_key(), b"pw")
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match=r"refusing .*readable by group or others \(chmod 600\)"):
        read_private_key(path, b"pw")


def test_missing_and_malformed_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        read_private_key(tmp_path / "nope.pem", None)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        read_private_key(junk, None)


def test_load_public_key_accepts_pem_and_openssh() -> None:
    key = generate_private_key().public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert spki_sha256(load_public_key(pem)) == spki_sha256(key)
    assert spki_sha256(load_public_key(ssh + b" alice@laptop")) == spki_sha256(key)


def test_load_public_key_refuses_weak_or_foreign_keys() -> None:
    small = rsa.generate_private_key(65537, 1024).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    for key, reason in ((small, "too small"), (p384, "not supported")):
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(MalformedInputError, match=reason):
            load_public_key(pem)
    with pytest.raises(MalformedInputError, match="not a public key"):
        load_public_key(b"ssh-ed25519 AAAAnotbase64!!")


def test_spki_sha256_matches_openssl_style_fingerprint() -> None:
    import hashlib

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_sha256(key) == hashlib.sha256(der).hexdigest()


def _csr(key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .sign(key, hashes.SHA256())
    )


def test_csr_loads_from_pem_and_der() -> None:
    csr = _csr(ec.generate_private_key(ec.SECP256R1()))
    assert load_csr(csr.public_bytes(serialization.Encoding.PEM)).subject == csr.subject
    assert load_csr(csr.public_bytes(serialization.Encoding.DER)).subject == csr.subject


def test_csr_with_bad_signature_is_refused() -> None:
    der = bytearray(
        _csr(ec.generate_private_key(ec.SECP256R1())).public_bytes(serialization.Encoding.DER)
    )
    der[-5] ^= 0x01
    with pytest.raises(MalformedInputError, match="CSR signature does not verify"):
        load_csr(bytes(der))


def test_malformed_csr_is_refused() -> None:
    with pytest.raises(MalformedInputError, match="not a certificate signing request"):
        load_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----")
    with pytest.raises(MalformedInputError):
        load_csr(b"\x30\x03\x02\x01\x00")


def test_exports_for_handing_a_key_to_its_user(pki: Pki) -> None:
    pem = encrypted_pem(pki.user_key, b"pw")
    assert serialization.load_pem_private_key(pem, b"pw") is not None
    bundle = pkcs12_bundle(pki.user_key, pki.identity, pki.root, b"pw", "alice")
    loaded = pkcs12.load_pkcs12(bundle, b"pw")
    assert loaded.cert is not None and loaded.cert.certificate == pki.identity
    assert [c.certificate for c in loaded.additional_certs] == [pki.root]
