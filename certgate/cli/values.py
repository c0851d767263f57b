"""Option values the commands share: durations and points in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certgate.errors import CertgateError
from certgate.policy.values import parse_duration


def parse_duration_option(text: str, option: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CertgateError(f"{option}: {exc}") from exc


def parse_time_option(text: str | None, option: str = "--at") -> datetime:
    """An ISO 8601 time (naive means UTC); now when not given."""
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CertgateError(f"{option} {text!r}: not an ISO 8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
