"""Finding audit entries for review: filters, relative times, streaming in seq order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select

from certgate.audit.chain import OUTCOMES, ChainEntry
from certgate.audit.log import entry_from_row, stream_entries
from certgate.errors import CertgateError, NotFoundError
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow

_RELATIVE = re.compile(r"([0-9]{1,12})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, option: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (a time without a zone is UTC) or a relative age like ``2h`` or ``7d`` (ago)."""
    value = text.strip()
    match = _RELATIVE.fullmatch(value)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        try:
            return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
        except OverflowError:
            raise CertgateError(f"{option}: {text!r} reaches back before the year 1") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CertgateError(
            f"{option}: invalid time {text!r} (expected ISO 8601 like 2026-11-28T10:00Z, "
            "or an age like 30m, 2h, 7d)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class EventFilter:
    user: str | None = None
    vm: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    event_type: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise CertgateError(f"--outcome must be one of {', '.join(OUTCOMES)}")

    def apply(self, query: Select[Any]) -> Select[Any]:
        conditions = []
        if self.user is not None:
            conditions.append(AuditEventRow.user_name == self.user)
        if self.vm is not None:
            conditions.append(AuditEventRow.vm == self.vm)
        if self.since is not None:
            conditions.append(AuditEventRow.ts >= self.since)
        if self.until is not None:
            conditions.append(AuditEventRow.ts < self.until)
        if self.outcome is not None:
            conditions.append(AuditEventRow.outcome == self.outcome)
        if self.event_type is not None:
            if self.event_type.endswith("*"):
                conditions.append(AuditEventRow.event_type.startswith(self.event_type[:-1]))
            else:
                conditions.append(AuditEventRow.event_type == self.event_type)
        if self.session_id is not None:
            conditions.append(AuditEventRow.session_id == self.session_id)
        return query.where(*conditions)


def count_events(database: Database, filters: EventFilter) -> int:
    with database.read() as session:
        return int(session.execute(
            filters.apply(select(func.count()).select_from(AuditEventRow))).scalar_one())


def latest_events(database: Database, filters: EventFilter, limit: int) -> list[ChainEntry]:
    """The newest ``limit`` matching entries, oldest first (the order a log is read in)."""
    with database.read() as session:
        rows = session.execute(
            filters.apply(select(AuditEventRow)).order_by(AuditEventRow.seq.desc()).limit(limit)
        ).scalars().all()
        return [entry_from_row(row) for row in reversed(rows)]


def stream_events(database: Database, filters: EventFilter,
                  batch: int = 1000) -> Iterator[ChainEntry]:
    """All matching entries in seq order, a batch per read transaction (for export)."""
    return stream_entries(database, query=filters.apply(select(AuditEventRow)), batch=batch)


def get_event(database: Database, seq: int) -> ChainEntry:
    with database.read() as session:
        row = session.get(AuditEventRow, seq)
        if row is None:
            raise NotFoundError(f"no audit entry {seq} (pruned, or not written yet)")
        return entry_from_row(row)


def entry_dict(entry: ChainEntry) -> dict[str, Any]:
    """An entry as plain data, details decoded (for --json, export and show)."""
    try:
        details: Any = entry.details
    except ValueError:
        details = entry.details_json
    return {
        "seq": entry.seq, "ts": entry.ts.isoformat(), "type": entry.event_type,
        "actor": entry.actor, "outcome": entry.outcome, "user": entry.user, "vm": entry.vm,
        "serial": entry.serial, "source": entry.source, "session": entry.session_id,
        "details": details, "prev_hash": entry.prev_hash, "entry_hash": entry.entry_hash,
    }
