"""Finding 1, audit batch poisoning: no client-supplied value can fail an audit batch, and a
batch that fails anyway costs no other event its row (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hostile_cli import HostileHome
from sqlalchemy import insert
from sqlalchemy.exc import DataError, IntegrityError

from certgate.audit.chain import COLUMN_WIDTHS, AuditEvent, ChainEntry, bounded
from certgate.audit.log import AuditLog
from certgate.audit.writer import AuditWriter
from certgate.errors import AuditError
from certgate.store.schema import AUDIT_TEXT_COLUMNS, AuditEventRow

LOGIN_NAME = "f1-" + "v" * 1020  # asyncssh accepts login names up to 1,023 bytes


def test_chain_widths_are_the_schema_widths() -> None:
    chain_names = {"user": "user_name"}
    assert {chain_names.get(k, k): v for k, v in COLUMN_WIDTHS.items()} == AUDIT_TEXT_COLUMNS
    for column, width in AUDIT_TEXT_COLUMNS.items():
        length = AuditEventRow.__table__.c[column].type.length  # type: ignore[attr-defined]
        assert length == width, column


def test_an_oversize_login_name_is_bounded_recognisably() -> None:
    event = AuditEvent("auth.login", "gateway:gw", outcome="deny", vm=LOGIN_NAME)
    assert event.vm is not None and len(event.vm) == 64
    assert event.vm.startswith("f1-vvv") and "~" in event.vm
    assert event.vm == bounded(LOGIN_NAME, 64), "the same name always gives the same value"
    assert bounded("f1-" + "v" * 1019 + "w", 64) != event.vm, "different names stay apart"
    assert AuditEvent("t", "a", user="nul\x00here").user == "nul\\x00here"


def test_the_poisoned_batch_commits_with_everyone_elses_events(hostile: HostileHome) -> None:
    """The repro of finding 1: hostile login names in one batch with real users' logins."""
    database = hostile.database()
    head = hostile.audit_head()
    try:
        async def scenario() -> list[ChainEntry]:
            async with AuditWriter(AuditLog(database)) as writer:
                events = []
                for n in range(60):
                    if n % 3:
                        events.append(AuditEvent("auth.login", "gateway:gw", outcome="deny",
                                                 vm=LOGIN_NAME + str(n), source="127.0.0.2",
                                                 details={"reason": "unknown key"}))
                    else:
                        events.append(AuditEvent("auth.login", "gateway:gw", outcome="allow",
                                                 user="holder", vm="vm01",
                                                 source="127.0.0.1"))
                return list(await asyncio.gather(*(writer.append(e) for e in events)))

        entries = asyncio.run(scenario())
    finally:
        database.dispose()
    assert len(entries) == 60
    stored = hostile.audit_since(head)
    assert sum(1 for e in stored if e.outcome == "allow") == 20
    assert sum(1 for e in stored if e.outcome == "deny") == 40
    assert all(e.vm is not None and len(e.vm) <= 64 for e in stored)
    hostile.assert_chain_intact()


@pytest.mark.parametrize("column,width", sorted(AUDIT_TEXT_COLUMNS.items()))
def test_both_databases_refuse_what_does_not_fit(hostile: HostileHome, column: str,
                                                 width: int) -> None:
    """The column types match: SQLite (CHECK) refuses exactly what PostgreSQL (VARCHAR)
    refuses, so tests on SQLite see what production on PostgreSQL would."""
    database = hostile.database()
    values: dict[str, object] = {
        "seq": 10**12, "ts": datetime.now(UTC), "event_type": "t", "actor": "a",
        "details": "{}", "prev_hash": "0" * 64, "entry_hash": "0" * 64,
        column: "x" * (width + 1)}
    try:
        with pytest.raises((IntegrityError, DataError)), database.write() as session:
            session.execute(insert(AuditEventRow), [values])
    finally:
        database.dispose()
    hostile.assert_chain_intact()


def test_a_failing_event_costs_only_its_own_caller(hostile: HostileHome) -> None:
    """Whatever the reason a database refuses one event, the batch is split and every other
    event is committed; only the refused event's caller hears AuditError."""
    database = hostile.database()
    log = AuditLog(database)
    head = hostile.audit_head()

    async def picky_commit(events: Sequence[AuditEvent]) -> list[ChainEntry]:
        if any(e.details.get("poison") for e in events):
            raise AuditError("cannot write the audit log: value refused")
        return await asyncio.to_thread(log.record_many, events)

    try:
        async def scenario() -> tuple[list[object], int]:
            async with AuditWriter(log, commit=picky_commit) as writer:
                events = [AuditEvent("test.event", "gw", details={"n": n, "poison": n == 7})
                          for n in range(40)]
                results = await asyncio.gather(*(writer.append(e) for e in events),
                                               return_exceptions=True)
                return list(results), writer.split_batches

        results, splits = asyncio.run(scenario())
    finally:
        database.dispose()
    failed = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [7]
    assert isinstance(results[7], AuditError)
    assert splits > 0
    stored = sorted(e.details["n"] for e in hostile.audit_since(head))
    assert stored == [n for n in range(40) if n != 7]
    hostile.assert_chain_intact()
