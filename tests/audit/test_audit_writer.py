"""AuditWriter: concurrent appends share commits, and nobody hears "written" before the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.audit.verification import VerificationReport
from certgate.audit.writer import AuditWriter
from certgate.errors import AuditError
from certgate.installation import Installation


def test_concurrent_appends_are_committed_in_few_batches(
        installation: Installation, verify: Callable[[], VerificationReport]) -> None:
    async def scenario() -> list[ChainEntry]:
        async with AuditWriter(installation.audit) as writer:
            entries = await asyncio.gather(*(
                writer.append(AuditEvent("test.event", "gateway:gw", details={"n": n}))
                for n in range(300)))
            assert writer.batches < 30
            return list(entries)

    entries = asyncio.run(scenario())
    assert sorted(e.seq for e in entries) == list(range(2, 302))
    assert sorted(e.details["n"] for e in entries) == list(range(300))
    report = verify()
    assert report.intact and report.entries_checked == 301


def test_an_append_returns_only_after_its_batch_committed(
        installation: Installation) -> None:
    committed: list[int] = []
    release = asyncio.Event()

    async def slow_commit(events: Sequence[AuditEvent]) -> list[ChainEntry]:
        await release.wait()
        entries = await asyncio.to_thread(installation.audit.record_many, events)
        committed.extend(e.seq for e in entries)
        return entries

    async def scenario() -> None:
        async with AuditWriter(installation.audit, commit=slow_commit) as writer:
            task = asyncio.create_task(writer.append(AuditEvent("test.event", "gw")))
            await asyncio.sleep(0.05)
            assert not task.done() and committed == []
            release.set()
            entry = await task
            assert committed == [entry.seq]

    asyncio.run(scenario())


def test_a_failed_commit_fails_every_waiter(installation: Installation) -> None:
    async def broken(events: Sequence[AuditEvent]) -> list[ChainEntry]:
        raise OSError("disk full")

    async def scenario() -> None:
        async with AuditWriter(installation.audit, commit=broken) as writer:
            results = await asyncio.gather(
                *(writer.append(AuditEvent("test.event", "gw")) for _ in range(3)),
                return_exceptions=True)
            assert all(isinstance(r, AuditError) for r in results)
            assert "disk full" in str(results[0])

    asyncio.run(scenario())


def test_appending_to_a_stopped_writer_is_refused(installation: Installation) -> None:
    async def scenario() -> None:
        writer = AuditWriter(installation.audit)
        with pytest.raises(AuditError, match="not running"):
            await writer.append(AuditEvent("test.event", "gw"))

    asyncio.run(scenario())
