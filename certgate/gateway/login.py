"""SSH authentication: from the key the client proved to a certgate identity.

asyncssh offers no public callback that hands the server the credential that actually
authenticated (tech-facts). We therefore wrap ``SSHServerConnection.validate_public_key``
on each connection: it receives the raw key or certificate blob for both the query and the
signed request, so we can (1) refuse keys without a valid identity before asyncssh even
answers PK_OK and (2) remember the identity of the one credential whose signature verified.
asyncssh is pinned (<2.25) and tests/gateway cover this hook, so an upgrade that changes it
fails loudly rather than silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
from asyncssh.public_key import decode_ssh_certificate, decode_ssh_public_key

from ca.errors import CAError
from ca.keys import spki_sha256
from ca.ssh_certs import public_key_from_ssh
from certgate.gateway.access import AccessRefused, AccessService, Credential, Identity

log = logging.getLogger(__name__)

AuditHook = Callable[[str, str, str | None, Credential | None, str | None], Awaitable[None]]


def credential_from_blob(key_data: bytes) -> Credential:
    """Decode what the client presented: a plain public key or an OpenSSH user certificate."""
    try:
        cert = decode_ssh_certificate(key_data)
    except (asyncssh.KeyImportError, ValueError):
        cert = None
    if cert is not None:
        if cert.is_x509_chain:
            raise AccessRefused("X.509 certificate chains are not accepted on this gateway")
        key = public_key_from_ssh(cert.key)
        return Credential(
            kind="openssh-cert",
            key_fingerprint=spki_sha256(key),
            ssh_fingerprint=cert.key.get_fingerprint("sha256"),
            ssh_cert_blob=key_data,
        )
    try:
        ssh_key = decode_ssh_public_key(key_data)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise AccessRefused("unreadable public key") from exc
    key = public_key_from_ssh(ssh_key)
    return Credential(
        kind="key",
        key_fingerprint=spki_sha256(key),
        ssh_fingerprint=ssh_key.get_fingerprint("sha256"),
    )


class LoginState:
    """Per-connection authentication state, filled in by the wrapped validator."""

    def __init__(self) -> None:
        self.identity: Identity | None = None
        self.refusals: list[str] = []


def install_login_hook(
    conn: asyncssh.SSHServerConnection,
    state: LoginState,
    access: AccessService,
    audit: AuditHook,
) -> None:
    original = conn.validate_public_key
    target = ""

    async def validate_public_key(
        username: str, key_data: bytes, msg: bytes, signature: bytes
    ) -> bool:
        nonlocal target
        target = username
        credential: Credential | None = None
        try:
            credential = credential_from_blob(key_data)
            identity = await asyncio.to_thread(access.identify, credential)
        except (AccessRefused, CAError) as exc:
            reason = str(exc)
            if reason not in state.refusals:
                state.refusals.append(reason)
                await audit("deny", username, reason, credential, None)
            return False
        accepted: bool = await original(username, key_data, msg, signature)
        if accepted and msg:
            state.identity = identity
            await audit("allow", username, None, credential, identity.user)
        elif not accepted and msg:
            await audit("deny", username, "signature or certificate check failed",
                        credential, None)
        return accepted

    conn.validate_public_key = validate_public_key  # type: ignore[method-assign]


def peer_address(conn: Any) -> str | None:
    peer = conn.get_extra_info("peername")
    return str(peer[0]) if peer else None
