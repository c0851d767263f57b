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
from certgate.access import AccessRefused, AccessService, Credential, Identity

log = logging.getLogger(__name__)

AuditHook = Callable[[str, str, str | None, Credential | None, str | None], Awaitable[None]]


X509_PREFIX = b"x509v3-"


def _ssh_string(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(data):
        raise AccessRefused("truncated X.509 certificate chain")
    length = int.from_bytes(data[offset:offset + 4], "big")
    end = offset + 4 + length
    if end > len(data):
        raise AccessRefused("truncated X.509 certificate chain")
    return data[offset + 4:end], end


def x509_leaf(key_data: bytes) -> bytes | None:
    """The end-entity certificate (DER) of an RFC 6187 ``x509v3-*`` key blob, else None.

    RFC 6187 section 2.1: string algorithm, uint32 count, count x string DER, ... The leaf
    comes first. Parsed here because asyncssh keeps its decoded chain private.
    """
    algorithm, offset = _ssh_string(key_data, 0)
    if not algorithm.startswith(X509_PREFIX):
        return None
    if offset + 4 > len(key_data) or int.from_bytes(key_data[offset:offset + 4], "big") < 1:
        raise AccessRefused("empty X.509 certificate chain")
    leaf, _ = _ssh_string(key_data, offset + 4)
    return leaf


def credential_from_blob(key_data: bytes) -> Credential:
    """Decode what the client presented: a key, an OpenSSH or an X.509 (RFC 6187) certificate."""
    try:
        cert = decode_ssh_certificate(key_data)
    except (asyncssh.KeyImportError, ValueError):
        cert = None
    if cert is not None:
        key = public_key_from_ssh(cert.key)
        if cert.is_x509_chain:
            return Credential(
                kind="x509",
                key_fingerprint=spki_sha256(key),
                ssh_fingerprint=cert.key.get_fingerprint("sha256"),
                x509_der=x509_leaf(key_data),
            )
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

    def __init__(self, max_attempts: int = 6) -> None:
        self.max_attempts = max_attempts
        """Distinct keys one connection may present (sshd's MaxAuthTries)."""
        self.attempts = 0
        self.identity: Identity | None = None
        self.refusals: list[str] = []
        # OpenSSH asks "would you accept this key?" and then signs with it: resolve the
        # identity once per presented key within this (seconds-long) authentication.
        self.resolved: dict[bytes, tuple[Credential, Identity]] = {}
        self.login_recorded: asyncio.Future[None] | None = None
        """Set at authentication: done once the ``auth.login`` event is committed; dropped
        (``recorded`` set instead) once it succeeded, kept when it failed."""
        self.recorded = False

    async def wait_recorded(self) -> None:
        """Return once the login is durably audited; raise (AuditError) if it cannot be."""
        if self.identity is None:
            raise AccessRefused("not authenticated")
        if self.recorded:
            return
        if self.login_recorded is None:
            raise AccessRefused("not authenticated")
        await asyncio.shield(self.login_recorded)

    def authenticated(self) -> None:
        """Authentication is over: the per-key cache is not needed for the connection's
        remaining life (hours, for a console session)."""
        self.resolved = {}


def install_login_hook(
    conn: asyncssh.SSHServerConnection,
    state: LoginState,
    access: AccessService,
    audit: AuditHook,
) -> None:
    original = conn.validate_public_key

    async def refuse(username: str, reason: str, credential: Credential | None) -> bool:
        if reason not in state.refusals:
            state.refusals.append(reason)
            try:
                await audit("deny", username, reason, credential, None)
            except Exception:  # the refusal stands even when it cannot be recorded
                log.error("could not audit a refused login: %s", reason)
        return False

    async def validate_public_key(
        username: str, key_data: bytes, msg: bytes, signature: bytes
    ) -> bool:
        credential: Credential | None = None
        if key_data not in state.resolved:
            state.attempts += 1
            if state.attempts > state.max_attempts:
                await refuse(username, "too many authentication attempts", None)
                conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                "too many authentication failures")
                return False
        try:
            if key_data in state.resolved:
                credential, identity = state.resolved[key_data]
            else:
                credential = credential_from_blob(key_data)
                identity = await asyncio.to_thread(access.identify, credential)
                state.resolved[key_data] = (credential, identity)
        except (AccessRefused, CAError) as exc:
            return await refuse(username, str(exc), credential)
        except Exception as exc:  # store down, or a bug: never admit anyone on an error
            log.exception("identity check failed")
            return await refuse(
                username, f"identity could not be checked ({type(exc).__name__})", credential
            )
        # For X.509 chains asyncssh would require the login name among the certificate's
        # e-mail addresses; our login name names a VM, and identity is already settled above.
        checked_name = "" if credential.kind == "x509" else username
        accepted: bool = await original(checked_name, key_data, msg, signature)
        if not msg:
            return accepted  # a query ("would you accept this key?"), not a login yet
        if not accepted:
            return await refuse(username, "signature or certificate check failed", credential)
        # The login's audit event is committed while the client opens its session channel
        # (one round trip or two), not before we answer: nothing is served on this connection
        # until it is durable (the gateway awaits ``state.login_recorded`` first), and if it
        # cannot be written the connection is closed.
        state.identity = identity
        state.login_recorded = asyncio.ensure_future(
            audit("allow", username, None, credential, identity.user))
        user = identity.user

        def recorded(future: asyncio.Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                log.error("login of %s ended: the audit log cannot be written", user)
                conn.disconnect(asyncssh.DISC_BY_APPLICATION,
                                "the audit log cannot be written; try later")
            elif state.login_recorded is future:
                # Durable: a flag from now on, not a finished task held by every connection.
                state.recorded = True
                state.login_recorded = None

        state.login_recorded.add_done_callback(recorded)
        return True

    conn.validate_public_key = validate_public_key  # type: ignore[method-assign]


async def _options_unchanged() -> None:
    """``reload_config`` for a server started without a configuration file."""


def keep_shared_options(conn: asyncssh.SSHServerConnection) -> None:
    """Skip asyncssh's per-login re-evaluation of the server configuration.

    asyncssh re-reads its configuration when authentication begins (``reload_config``), to
    apply sshd_config ``Match`` blocks for the user and address. The gateway passes no
    configuration, so each login built, in a worker thread, a copy of the server's options
    equal to the shared one, and the connection kept it for its life (~3 KiB with its
    dictionaries, host key pairs and config). Only for servers created without ``config``.
    """
    conn.reload_config = _options_unchanged  # type: ignore[method-assign]


def remove_login_hook(conn: asyncssh.SSHServerConnection, state: LoginState) -> None:
    """After authentication: drop the hook (and the closures it holds) and the key cache, which
    a long console session would otherwise keep for nothing. asyncssh answers no further
    authentication request once one has succeeded."""
    if "validate_public_key" in vars(conn):
        del conn.validate_public_key
    state.authenticated()


def peer_address(conn: Any) -> str | None:
    peer = conn.get_extra_info("peername")
    return str(peer[0]) if peer else None
