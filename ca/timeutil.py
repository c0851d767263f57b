"""UTC, whole-second times: what certificates carry and what messages print."""

from datetime import UTC, datetime

from ca.errors import MalformedInputError


def utc_seconds(value: datetime, what: str = "time") -> datetime:
    """Return ``value`` in UTC truncated to whole seconds.

    Naive datetimes are refused: guessing a zone would silently shift validity.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise MalformedInputError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC).replace(microsecond=0)


def format_time(value: datetime) -> str:
    """Render a time as ``2026-11-28T10:00:00Z`` for messages."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_window(not_before: datetime, not_after: datetime) -> tuple[datetime, datetime]:
    """Normalise a validity window and refuse an empty or inverted one."""
    start = utc_seconds(not_before, "not_before")
    end = utc_seconds(not_after, "not_after")
    if end <= start:
        raise MalformedInputError(
            f"validity ends ({format_time(end)}) before it starts ({format_time(start)})"
        )
    return start, end
