"""Key pairs: generation, loading public keys and CSRs, key files at rest.

Only three algorithms are allowed (Ed25519, ECDSA P-256, RSA) so every signing
decision below is explicit. Private keys at rest are PKCS#8 PEM, mode 0600,
written atomically; a key file readable by group or others is refused.
"""

import hashlib
import stat
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from ca.errors import KeyFileError, MalformedInputError
from ca.files import write_atomically
from ca.pem import check_size, decode_pem, looks_like_pem

KeyAlgorithm = Literal["ed25519", "ecdsa-p256", "rsa-3072"]
KEY_ALGORITHMS: tuple[str, ...] = get_args(KeyAlgorithm)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

MIN_RSA_BITS = 2048
"""Smallest RSA key accepted on input; keys we generate are 3072 bits."""


def generate_private_key(algorithm: KeyAlgorithm = "ed25519") -> PrivateKey:
    """Generate a new private key of one of the supported algorithms."""
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise MalformedInputError(
        f"unknown key algorithm {algorithm!r} (choose one of {', '.join(KEY_ALGORITHMS)})"
    )


def check_public_key(key: object, what: str = "public key") -> PublicKey:
    """Return ``key`` if it is a supported public key, else raise MalformedInputError."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise MalformedInputError(f"{what}: EC curve {key.curve.name} is not supported (P-256)")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise MalformedInputError(
                f"{what}: RSA key of {key.key_size} bits is too small (at least {MIN_RSA_BITS})"
            )
        return key
    raise MalformedInputError(
        f"{what}: key type {type(key).__name__} is not supported (Ed25519, P-256, RSA)"
    )


def check_private_key(key: object, what: str = "private key") -> PrivateKey:
    """Return ``key`` if it is a supported private key, else raise MalformedInputError."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        check_public_key(key.public_key(), what)
        return key
    raise MalformedInputError(f"{what}: key type {type(key).__name__} is not supported")


MAX_KEY_BYTES = 64 * 1024
"""A public key (even RSA-16384 with a long comment) is far smaller."""


def load_public_key(data: bytes) -> PublicKey:
    """Load a PEM SubjectPublicKeyInfo, DER SPKI, or an OpenSSH public key line."""
    check_size(data, "public key", MAX_KEY_BYTES)
    text = data.strip()
    try:
        if looks_like_pem(text):
            _, der = decode_pem(text, ("PUBLIC KEY", "RSA PUBLIC KEY"), "public key")
            key: object = serialization.load_der_public_key(der)
        elif text.startswith((b"ssh-", b"ecdsa-sha2-")):
            key = serialization.load_ssh_public_key(text)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise MalformedInputError(
            f"not a public key (expected PEM SubjectPublicKeyInfo or an OpenSSH line): {exc}"
        ) from None
    return check_public_key(key)


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Load a PEM or DER CSR and insist that it is signed by the key it carries."""
    check_size(data, "certificate signing request")
    if looks_like_pem(data):
        _, data = decode_pem(data, ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
                             "certificate signing request")
    try:
        csr = x509.load_der_x509_csr(data)
        key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise MalformedInputError(f"not a certificate signing request: {exc}") from None
    check_public_key(key, "CSR public key")
    if not valid:
        raise MalformedInputError("CSR signature does not verify with the key it contains")
    return csr


def spki_sha256(key: PublicKey) -> str:
    """Lowercase hex SHA-256 of the SubjectPublicKeyInfo DER (key fingerprint)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _pkcs8(key: PrivateKey, encryption: serialization.KeySerializationEncryption) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def encrypted_pem(key: PrivateKey, passphrase: bytes) -> bytes:
    """PKCS#8 PEM encrypted with ``passphrase`` (for handing a key to its user once)."""
    if not passphrase:
        raise MalformedInputError("a non-empty passphrase is required to export a private key")
    return _pkcs8(key, serialization.BestAvailableEncryption(passphrase))


def pkcs12_bundle(
    key: PrivateKey,
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    passphrase: bytes,
    friendly_name: str,
) -> bytes:
    """PKCS#12 with key, certificate and root, encrypted with ``passphrase``."""
    if not passphrase:
        raise MalformedInputError("a non-empty passphrase is required for a PKCS#12 bundle")
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode(),
        key,
        cert,
        [ca_cert],
        serialization.BestAvailableEncryption(passphrase),
    )


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None) -> None:
    """Write ``key`` as PKCS#8 PEM, mode 0600, atomically (no torn or world-readable file).

    ``passphrase=None`` is the only way to get an unencrypted file, so it is a choice
    the caller makes visibly.
    """
    if passphrase is not None and not passphrase:
        raise MalformedInputError("empty passphrase: pass None to store the key unencrypted")
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    write_atomically(path, _pkcs8(key, encryption), 0o600)


def read_private_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    """Read a key written by ``write_private_key``; refuse open permissions."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(f"refusing {path}: readable by group or others (chmod 600)")
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and passphrase is None:
        raise KeyFileError(f"key file {path} is encrypted: a passphrase is required")
    if not encrypted and passphrase is not None and b"PRIVATE KEY-----" in data:
        raise KeyFileError(
            f"key file {path} is not encrypted but a passphrase was given; "
            "re-encrypt it or load it without a passphrase"
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if encrypted:
            raise KeyFileError(f"wrong passphrase for {path}") from None
        raise KeyFileError(f"key file {path} is not a PEM private key") from None
    try:
        return check_private_key(key, f"key file {path}")
    except MalformedInputError as exc:
        raise KeyFileError(str(exc)) from None
