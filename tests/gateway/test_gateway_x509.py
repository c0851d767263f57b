"""X.509 client certificates over SSH (RFC 6187).

The OpenSSH client cannot present X.509 certificates (``ssh -Q key`` lists none), so these
tests use asyncssh as the client, as PKIX-SSH or asyncssh-based tools would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from gateway_testing import Gateway, details

from ca import keys

pytestmark = pytest.mark.slow


def _x509_user(gateway: Gateway, name: str) -> tuple[Path, Path, str]:
    private = keys.generate_private_key("ecdsa-p256")
    issued = gateway.inst.ca.add_user(name, email=f"{name}@example.invalid",
                                   public_key=private.public_key(), days=1)
    key_path = gateway.workdir / f"{name}.x509.key"
    key_path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                               NoEncryption()))
    cert_path = gateway.workdir / f"{name}.x509.pem"
    cert_path.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    return key_path, cert_path, issued.serial


async def _run(gateway: Gateway, key: Path, cert: Path, target: str, command: str) -> str:
    client_key = asyncssh.read_private_key(str(key))
    certificate = asyncssh.import_certificate(cert.read_bytes())
    async with asyncssh.connect(
        "127.0.0.1", gateway.port, username=target, client_keys=[(client_key, certificate)],
        known_hosts=str(gateway.known_hosts), agent_path=None, config=[],
    ) as conn:
        result = await conn.run(command, check=False)
        output = result.stdout
        return output if isinstance(output, str) else bytes(output or b"").decode()


def test_an_identity_certificate_presented_over_ssh_logs_in_as_its_user(
    gateway: Gateway,
) -> None:
    key, cert, serial = _x509_user(gateway, "xavier")
    gateway.grant("xavier", "role=operator")
    head = gateway.audit_head()

    output = asyncio.run(_run(gateway, key, cert, "anything", "whoami"))

    assert "user        xavier" in output
    assert f"identity    {serial}" in output
    assert "credential  x509" in output
    assert "role=operator" in output
    login = gateway.wait_for_audit("auth.login", after=head, match=lambda e: e.user == "xavier")
    assert login.outcome == "allow" and details(login)["credential"] == "x509"


def test_a_revoked_identity_certificate_is_refused_over_x509_too(gateway: Gateway) -> None:
    key, cert, serial = _x509_user(gateway, "yvonne")
    code, output = gateway.cli("revoke", serial, "--reason", "keyCompromise")
    assert code == 0, output
    head = gateway.audit_head()

    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_run(gateway, key, cert, "vm01", "whoami"))

    refusal = gateway.wait_for_audit("auth.login", after=head,
                                     match=lambda e: e.outcome == "deny")
    assert "revoked" in details(refusal)["reason"]


def test_a_certificate_from_another_ca_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from ca import authority

    stranger_root_key = keys.generate_private_key("ed25519")
    stranger_root = authority.build_root_certificate(stranger_root_key, "someone else's CA")
    private = keys.generate_private_key("ecdsa-p256")
    now = datetime.now(UTC)
    forged = authority.build_identity_certificate(
        stranger_root, stranger_root_key, private.public_key(), user_name="alice", email=None,
        not_before=now - timedelta(minutes=1), not_after=now + timedelta(hours=1),
    )
    key_path, cert_path = tmp_path / "forged.key", tmp_path / "forged.pem"
    key_path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                               NoEncryption()))
    cert_path.write_bytes(forged.public_bytes(Encoding.PEM))

    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_run(gateway, key_path, cert_path, "whoami", "whoami"))
