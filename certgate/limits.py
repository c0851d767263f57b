"""Operator limits: certificate lifetimes, recording sizes and login abuse limits.

They live in the ``[limits]`` table of ``certgate.toml``; every key is optional and the
defaults are what a careful operator would choose. Unknown keys and nonsense values are
refused at start-up rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from certgate.errors import CertgateError, HomeError
from certgate.policy.values import format_duration, parse_duration


@dataclass(frozen=True)
class LoginLimits:
    """Limits on what unauthenticated strangers can make the gateway do (see
    certgate.gateway.throttle, which enforces them)."""

    max_auth_tries: int = 6
    """Distinct keys per connection (sshd's MaxAuthTries)."""
    max_startups: int = 100
    """Unauthenticated connections at once, gateway-wide (sshd's MaxStartups)."""
    max_startups_per_source: int = 10
    failure_burst: int = 10
    """Failed attempts per source and window audited one by one before the source is blocked."""
    window: float = 60.0
    backoff: float = 10.0
    """Seconds of the first block; each repeat doubles it up to ``max_backoff``."""
    max_backoff: float = 600.0
    login_grace: float = 30.0
    """Seconds from connect to completed authentication (sshd's LoginGraceTime)."""
    idle_without_session: float = 120.0
    """Seconds an authenticated connection may stay without opening a session (ssh -N)."""
    max_sources: int = 10_000

    def audit_rows_per_source_bound(self, seconds: float) -> int:
        """The most audit rows one source's refused attempts add in ``seconds``: the burst
        of individual rows per window, a block row and a summary row per window, and the
        attempts already in flight when the block starts (one per allowed connection)."""
        windows = int(seconds // self.window) + 1
        return windows * (self.failure_burst + 2) + self.max_startups_per_source


@dataclass(frozen=True)
class Limits:
    max_identity_lifetime: timedelta = timedelta(days=825)
    max_attribute_lifetime: timedelta = timedelta(days=397)
    max_ssh_cert_lifetime: timedelta = timedelta(days=7)
    """OpenSSH certificates are short-lived by design (they cannot be revoked by CRL)."""
    max_recording_bytes: int = 1 << 30
    """Per session recording; when reached, recording stops with a note (the session goes on
    and the audit log says so)."""
    login: LoginLimits = field(default_factory=LoginLimits)

    def check_lifetime(self, kind: str, requested: timedelta) -> timedelta:
        maximum = {
            "identity": self.max_identity_lifetime,
            "attribute": self.max_attribute_lifetime,
            "ssh": self.max_ssh_cert_lifetime,
        }[kind]
        if requested > maximum:
            raise CertgateError(
                f"--valid {format_duration(requested)} exceeds the maximum {kind} certificate "
                f"lifetime of {format_duration(maximum)} (limits.max_{kind}_lifetime in "
                "certgate.toml)")
        return requested

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str) -> Limits:
        lifetimes = {"max_identity_lifetime", "max_attribute_lifetime", "max_ssh_cert_lifetime"}
        login_names = {f.name for f in fields(LoginLimits)}
        known = lifetimes | login_names | {"max_recording_bytes"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise HomeError(f"{source}: unknown limit(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in lifetimes & set(table):
            value = table[name]
            try:
                values[name] = parse_duration(str(value))
            except ValueError as exc:
                raise HomeError(f"{source}: limits.{name}: {exc}") from None
        if "max_recording_bytes" in table:
            values["max_recording_bytes"] = _positive(table, "max_recording_bytes", int, source)
        login: dict[str, Any] = {}
        for f in fields(LoginLimits):
            if f.name in table:
                kind = int if f.type in ("int", int) else float
                login[f.name] = _positive(table, f.name, kind, source)
        return cls(**values, login=LoginLimits(**login))


def _positive(table: Mapping[str, Any], name: str, kind: type, source: str) -> Any:
    value = table[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            kind is int and not isinstance(value, int)):
        raise HomeError(f"{source}: limits.{name} must be a {kind.__name__}, not {value!r}")
    if not 0 < value <= 10**12:
        raise HomeError(f"{source}: limits.{name} must be positive, not {value!r}")
    return kind(value)
