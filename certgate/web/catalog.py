"""What the review site reads: pages of sessions, one session's decision and events.

Pages are keyset pages (newest first, ``started_at`` then ``id``), so the hundredth page of
100,000 sessions costs what the first does. Every query is limited to the VMs the reviewer
may see; the caller passes them in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select

from certgate.audit.chain import ChainEntry
from certgate.audit.log import entry_from_row
from certgate.audit.sessions import ABNORMAL, ENDED, LIVE, ConsoleSession, session_from_row
from certgate.errors import CertgateError, NotFoundError
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow, ConsoleSessionRow

STATUSES = (LIVE, ENDED, ABNORMAL)
PAGE_SIZE = 50
REVIEW_EVENT_PREFIX = "review."
"""The site's own audit events name the session looked at; they are not the session's."""
MAX_EVENTS = 500
_SESSION_ID = re.compile(r"[0-9a-f-]{36}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}")


class BadFilter(CertgateError):
    """A filter value the site cannot use; the message says which."""


@dataclass(frozen=True)
class SessionFilter:
    user: str | None = None
    vm: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    end_reason: str | None = None

    def __post_init__(self) -> None:
        for label, value in (("user", self.user), ("VM", self.vm)):
            if value is not None and not _NAME.fullmatch(value):
                raise BadFilter(f"{label} filter: not a valid name")
        if self.status is not None and self.status not in STATUSES:
            raise BadFilter(f"outcome filter: one of {', '.join(STATUSES)}")
        if self.end_reason is not None and len(self.end_reason) > 100:
            raise BadFilter("end reason filter: at most 100 characters")

    def apply(self, query: Select[Any]) -> Select[Any]:
        row = ConsoleSessionRow
        if self.user:
            query = query.where(row.user_name == self.user)
        if self.vm:
            query = query.where(row.vm == self.vm)
        if self.since:
            query = query.where(row.started_at >= self.since)
        if self.until:
            query = query.where(row.started_at < self.until)
        if self.status:
            query = query.where(row.status == self.status)
        if self.end_reason:
            escaped = (self.end_reason.replace("\\", "\\\\").replace("%", "\\%")
                       .replace("_", "\\_"))
            query = query.where(row.end_reason.ilike(f"%{escaped}%", escape="\\"))
        return query


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: strictly older than this session."""

    started_at: datetime
    session_id: str

    def encode(self) -> str:
        return f"{self.started_at.isoformat()}_{self.session_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        stamp, _, session_id = text.rpartition("_")
        try:
            started = datetime.fromisoformat(stamp)
        except ValueError:
            raise BadFilter("page cursor: malformed") from None
        if started.tzinfo is None or not _SESSION_ID.fullmatch(session_id):
            raise BadFilter("page cursor: malformed")
        return cls(started, session_id)


@dataclass(frozen=True)
class SessionPage:
    sessions: list[ConsoleSession]
    next_cursor: Cursor | None


def sessions_page(database: Database, filters: SessionFilter, vms: Sequence[str],
                  cursor: Cursor | None = None, size: int = PAGE_SIZE) -> SessionPage:
    """One page of sessions on ``vms`` matching ``filters``, newest first."""
    if not vms:
        return SessionPage([], None)
    row = ConsoleSessionRow
    query = filters.apply(select(row))
    if filters.vm is None:
        # ``vm || ''`` keeps the planner off the VM index for the scope test: walking the
        # started-at index newest first and skipping other VMs' rows stops after one page,
        # where "all rows of these VMs, then sort" reads and sorts every one of them.
        query = query.where(row.vm.concat("").in_(list(vms)))
    elif filters.vm not in vms:
        return SessionPage([], None)
    if cursor is not None:
        query = query.where(or_(row.started_at < cursor.started_at,
                                and_(row.started_at == cursor.started_at,
                                     row.id < cursor.session_id)))
    query = query.order_by(row.started_at.desc(), row.id.desc()).limit(size + 1)
    with database.read() as session:
        rows = session.execute(query).scalars().all()
        found = [session_from_row(r) for r in rows[:size]]
    more = len(rows) > size
    last = found[-1] if found and more else None
    return SessionPage(found, Cursor(last.started_at, last.id) if last else None)


def get_session(database: Database, session_id: str) -> ConsoleSession:
    if not _SESSION_ID.fullmatch(session_id):
        raise NotFoundError("no such session")
    with database.read() as session:
        row = session.get(ConsoleSessionRow, session_id)
        if row is None:
            raise NotFoundError("no such session")
        return session_from_row(row)


@dataclass(frozen=True)
class SessionRecord:
    """The audit side of one session: its access decision and its own events."""

    decision: ChainEntry | None
    events: list[ChainEntry]


def session_record(database: Database, console: ConsoleSession) -> SessionRecord:
    """The session's events, and the allow decision that opened it.

    The gateway writes ``access.decide`` just before ``session.start``, for the same user,
    VM and identity; the newest such decision before the start is the one that opened it.
    """
    event = AuditEventRow
    with database.read() as session:
        events = session.execute(
            select(event).where(event.session_id == console.id,
                                ~event.event_type.startswith(REVIEW_EVENT_PREFIX))
            .order_by(event.seq)
            .limit(MAX_EVENTS)).scalars().all()
        start = next((e for e in events if e.event_type == "session.start"), None)
        decision = None
        if start is not None:
            decision = session.execute(
                select(event).where(
                    event.user_name == console.user, event.vm == console.vm,
                    event.event_type == "access.decide", event.serial == console.identity_serial,
                    event.seq < start.seq)
                .order_by(event.seq.desc()).limit(1)).scalar_one_or_none()
        return SessionRecord(entry_from_row(decision) if decision else None,
                             [entry_from_row(e) for e in events])


def known_vm_names(database: Database) -> list[str]:
    """Every VM name a session was ever recorded on (VMs removed from the fleet included)."""
    with database.read() as session:
        return list(session.execute(select(ConsoleSessionRow.vm).distinct()).scalars())
