"""Console session bookkeeping: start, heartbeat, end, and reaping after a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from certgate.audit.chain import AuditEvent
from certgate.audit.log import AuditLog
from certgate.audit.sessions import (
    SessionEnd,
    SessionStart,
    end_session,
    find_session,
    heartbeat,
    list_sessions,
    reap_abnormal,
    start_session,
)
from certgate.audit.verification import VerificationReport
from certgate.errors import AuditError, ConflictError, NotFoundError
from certgate.installation import Installation
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def _start(database: Database, gateway: str = "gw1", user: str = "alice",
           now: datetime = T0) -> str:
    return start_session(database, user=user, vm="vm1", identity_serial="0abc",
                         source="192.0.2.9:40000", privileges=["console.write", "console.break"],
                         gateway_id=gateway, recording_path="/r/x.cast", now=now).id


def _events(database: Database, session_id: str) -> list[tuple[str, str | None, dict[str, object]]]:
    with database.read() as session:
        rows = session.execute(select(AuditEventRow).where(AuditEventRow.session_id == session_id)
                               .order_by(AuditEventRow.seq)).scalars().all()
        return [(r.event_type, r.outcome, json.loads(r.details)) for r in rows]


def test_start_and_end_write_the_row_and_the_events(
        installation: Installation, verify: Callable[[], VerificationReport]) -> None:
    database = installation.database
    session_id = _start(database)
    live = list_sessions(database, live_only=True)
    assert [(s.id, s.user, s.status, s.privileges) for s in live] == [
        (session_id, "alice", "live", ("console.write", "console.break"))]
    heartbeat(database, session_id, now=T0 + timedelta(seconds=30))
    ended = end_session(database, session_id, reason="user logged out", bytes_in=12,
                        bytes_out=3400, recording_sha256="ab" * 32,
                        now=T0 + timedelta(minutes=2))
    assert (ended.status, ended.bytes_in, ended.bytes_out) == ("ended", 12, 3400)
    assert list_sessions(database, live_only=True) == []
    events = _events(database, session_id)
    assert [(t, o) for t, o, _ in events] == [("session.start", "ok"), ("session.end", "ok")]
    assert events[0][2]["privileges"] == ["console.break", "console.write"]
    assert events[1][2] == {"reason": "user logged out", "duration_seconds": 120.0,
                            "bytes_in": 12, "bytes_out": 3400, "recording_sha256": "ab" * 32}
    assert verify().intact


def test_a_session_ends_only_once(installation: Installation) -> None:
    session_id = _start(installation.database)
    end_session(installation.database, session_id, reason="done", bytes_in=0, bytes_out=0,
                recording_sha256=None)
    with pytest.raises(ConflictError, match="already ended"):
        end_session(installation.database, session_id, reason="again", bytes_in=0,
                    bytes_out=0, recording_sha256=None)
    with pytest.raises(NotFoundError, match="no console session nope"):
        heartbeat(installation.database, "nope")


def test_restart_after_a_crash_marks_live_sessions_abnormal(installation: Installation) -> None:
    """kill -9 leaves the row live; the gateway's next start-up ends it as abnormal."""
    database = installation.database
    mine = _start(database, gateway="gw1")
    other = _start(database, gateway="gw2", user="bob")
    reaped = reap_abnormal(database, "gw1", None, now=T0 + timedelta(minutes=5))
    assert [s.id for s in reaped] == [mine]
    statuses = {s.id: s.status for s in list_sessions(database)}
    assert statuses == {mine: "abnormal", other: "live"}
    [(kind, outcome, details)] = _events(database, mine)[1:]
    assert (kind, outcome) == ("session.abnormal-end", "error")
    assert details["reason"] == "gateway restarted while the session was live"


def test_only_sessions_with_a_stale_heartbeat_are_reaped(installation: Installation) -> None:
    database = installation.database
    stale = _start(database, now=T0)
    fresh = _start(database, now=T0)
    heartbeat(database, fresh, now=T0 + timedelta(seconds=50))
    reaped = reap_abnormal(database, "gw1", timedelta(seconds=30), now=T0 + timedelta(seconds=60))
    assert [s.id for s in reaped] == [stale]
    assert find_session(database, fresh[:8]).status == "live"


def test_a_live_gateway_reaps_the_stale_sessions_of_a_replica_that_died(
    installation: Installation,
) -> None:
    """A replica that never restarts must not leave its sessions "live" forever."""
    database = installation.database
    dead = _start(database, gateway="gw-dead", now=T0)
    alive = _start(database, gateway="gw-alive", user="bob", now=T0)
    heartbeat(database, alive, now=T0 + timedelta(seconds=55))

    reaped = reap_abnormal(database, None, timedelta(seconds=30), reaper="gw-alive",
                           now=T0 + timedelta(seconds=60))

    assert [s.id for s in reaped] == [dead]
    assert find_session(database, alive[:8]).status == "live"
    [(kind, _, details)] = _events(database, dead)[1:]
    assert kind == "session.abnormal-end" and details["reason"].startswith("no heartbeat since")
    actors = [e.actor for e in AuditLog(database).entries() if e.session_id == dead]
    assert actors[-1] == "gateway:gw-alive"


def test_a_session_is_found_by_a_unique_prefix(installation: Installation) -> None:
    one = _start(installation.database)
    assert find_session(installation.database, one[:6]).id == one
    assert find_session(installation.database, one.upper()).id == one
    with pytest.raises(NotFoundError):
        find_session(installation.database, "zzzz")
    start_session(installation.database, user="a", vm="v", identity_serial="1", source=None,
                  privileges=[], gateway_id="g", session_id=one[:4] + "-other")
    with pytest.raises(ConflictError, match="ambiguous"):
        find_session(installation.database, one[:4])


def test_a_session_start_and_end_built_in_memory_commit_like_the_readers_expect(
        installation: Installation, verify: Callable[[], VerificationReport]) -> None:
    """What the gateway commits through its writer: the start with the decision before it
    in one transaction, the end from memory; a reaped session is not ended twice."""
    database = installation.database
    log = AuditLog(database)
    start = SessionStart.new(user="alice", vm="vm1", identity_serial="0abc",
                             source="192.0.2.9", privileges=["console.view", "console.interact"],
                             gateway_id="gw1", recording_path="/r/s.cast", now=T0)
    decision = AuditEvent("access.decide", "gateway:gw1", outcome="allow", user="alice",
                          vm="vm1")
    entries = log.record_many([decision, start.event], before=[start.insert])
    assert [e.event_type for e in entries] == ["access.decide", "session.start"]
    stored = find_session(database, start.session.id)
    assert stored == start.session

    end = SessionEnd(start.session, "user detached", bytes_in=3, bytes_out=40,
                     recording_sha256="cd" * 32, now=T0 + timedelta(seconds=90))
    log.record_many([end.event], before=[end.update])
    at = T0 + timedelta(seconds=90)
    assert find_session(database, start.session.id) == replace(
        start.session, status="ended", ended_at=at, heartbeat_at=at,
        end_reason="user detached", bytes_in=3, bytes_out=40, recording_sha256="cd" * 32)
    assert _events(database, start.session.id)[-1][2] == {
        "reason": "user detached", "duration_seconds": 90.0, "bytes_in": 3, "bytes_out": 40,
        "recording_sha256": "cd" * 32}

    again = SessionEnd(start.session, "twice", bytes_in=0, bytes_out=0, recording_sha256=None,
                       now=T0 + timedelta(seconds=95))
    with pytest.raises(AuditError, match="no longer live"):
        log.record_many([again.event], before=[again.update])
    assert [t for t, _, _ in _events(database, start.session.id)].count("session.end") == 1
    assert verify().intact
