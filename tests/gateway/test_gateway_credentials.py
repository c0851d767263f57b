"""What the login hook reads from the blob a client authenticated with (no sockets)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import asyncssh
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ca import authority, keys, ssh_certs
from certgate.access import AccessRefused
from certgate.gateway.login import credential_from_blob, x509_leaf


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def test_a_plain_key_is_identified_by_the_sha256_of_its_subject_public_key_info() -> None:
    private = keys.generate_private_key("ed25519")
    blob = ssh_certs.ssh_public_key(private.public_key()).public_data

    credential = credential_from_blob(blob)

    assert credential.kind == "key"
    assert credential.key_fingerprint == keys.spki_sha256(private.public_key())
    assert credential.ssh_fingerprint.startswith("SHA256:")


def test_an_openssh_certificate_keeps_its_exact_blob_for_matching_our_records() -> None:
    ca_key, user_key = keys.generate_private_key(), keys.generate_private_key()
    now = datetime.now(UTC).replace(microsecond=0)
    line = ssh_certs.build_user_certificate(
        ca_key, user_key.public_key(), key_id="alice:01", serial=7,
        not_before=now, not_after=now + timedelta(hours=1),
    )
    blob = asyncssh.import_certificate(line).public_data

    credential = credential_from_blob(blob)

    assert credential.kind == "openssh-cert"
    assert credential.ssh_cert_blob == blob
    assert credential.key_fingerprint == keys.spki_sha256(user_key.public_key())


def test_the_leaf_of_an_rfc6187_chain_is_the_first_certificate() -> None:
    root_key = keys.generate_private_key()
    root = authority.build_root_certificate(root_key, "test root")
    leaf_der = root.public_bytes(Encoding.DER)
    blob = (_ssh_string(b"x509v3-ssh-ed25519") + struct.pack(">I", 2)
            + _ssh_string(leaf_der) + _ssh_string(b"second") + struct.pack(">I", 0))

    assert x509_leaf(blob) == leaf_der
    assert x509_leaf(_ssh_string(b"ssh-ed25519") + b"rest") is None


@pytest.mark.parametrize("blob", [
    _ssh_string(b"x509v3-ssh-ed25519") + struct.pack(">I", 0),
    _ssh_string(b"x509v3-ssh-ed25519") + struct.pack(">I", 1) + struct.pack(">I", 99) + b"x",
    _ssh_string(b"x509v3-ssh-ed25519")[:-3],
])
def test_a_malformed_x509_chain_is_refused_not_crashed_on(blob: bytes) -> None:
    with pytest.raises(AccessRefused):
        x509_leaf(blob)


def test_garbage_is_refused_with_a_reason() -> None:
    with pytest.raises(AccessRefused, match="unreadable public key"):
        credential_from_blob(b"\x00\x00\x00\x03abc")
