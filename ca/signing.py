"""Signature algorithm choice and raw sign/verify, decided by key type.

One table maps each supported key type to its hash and AlgorithmIdentifier so
no code path signs with a default nobody chose.
"""

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ca.errors import SignatureInvalid
from ca.keys import PrivateKey, PublicKey

OID_ED25519 = "1.3.101.112"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_RSA_SHA256 = "1.2.840.113549.1.1.11"

# DER of each AlgorithmIdentifier (RSA carries NULL parameters, the others none).
_ALGORITHM_IDENTIFIER_DER = {
    OID_ED25519: bytes.fromhex("300506032b6570"),
    OID_ECDSA_SHA256: bytes.fromhex("300a06082a8648ce3d040302"),
    OID_RSA_SHA256: bytes.fromhex("300d06092a864886f70d01010b0500"),
}


def signing_hash(key: PrivateKey | PublicKey) -> hashes.SHA256 | None:
    """Hash to hand to cryptography's builders: None for Ed25519, SHA-256 otherwise."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return None
    return hashes.SHA256()


def signature_algorithm_oid(key: PrivateKey | PublicKey) -> str:
    """The signature algorithm OID used for ``key``."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return OID_ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return OID_ECDSA_SHA256
    return OID_RSA_SHA256


def algorithm_identifier_der(key: PrivateKey | PublicKey) -> bytes:
    """Encoded AlgorithmIdentifier for signatures made with ``key``."""
    return _ALGORITHM_IDENTIFIER_DER[signature_algorithm_oid(key)]


def sign(key: PrivateKey, data: bytes) -> bytes:
    """Sign ``data`` with the algorithm fixed for the key type."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify_signature(
    public_key: PublicKey, algorithm_oid: str, signature: bytes, data: bytes, what: str
) -> None:
    """Verify ``signature`` over ``data``; raise SignatureInvalid naming ``what``."""
    try:
        if algorithm_oid == OID_ED25519 and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
            return
        if algorithm_oid == OID_ECDSA_SHA256 and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            return
        if algorithm_oid == OID_RSA_SHA256 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return
    except InvalidSignature:
        raise SignatureInvalid(f"{what}: signature does not verify with the issuer key") from None
    raise SignatureInvalid(
        f"{what}: signature algorithm {algorithm_oid} does not match the issuer key "
        f"({type(public_key).__name__}) or is not supported"
    )
