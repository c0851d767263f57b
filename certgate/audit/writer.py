"""Group commit for the gateway: many concurrent audit appends, one transaction per batch.

Durable appends cost one commit (one fsync) each; a busy gateway can have hundreds of events
in flight. ``AuditWriter`` collects whatever is waiting, appends it with one ``record_many``
in a worker thread and only then resolves each caller's future, so ``await append(event)``
still means "this event is committed" while the commit cost is shared by the whole batch.

A batch that fails is split in halves and retried, down to single events: one event the
database refuses costs only its own caller, never the other events (and logins) it was
batched with. A failure that is not about one event (the database is down) fails them all.

``append_many(events, before=...)`` commits several events and the statements that go with
them (the console session row that ``session.start`` describes) as one unit inside a batch:
a login's decision, its session row and its ``session.start`` cost one shared commit, and a
unit is never split from itself when a batch is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.audit.log import AuditLog
from certgate.errors import AuditError

MAX_BATCH = 500

Statement = Callable[[Session], None]
"""Work done in the batch's write transaction before its events are appended."""


@dataclass(frozen=True)
class _Pending:
    events: tuple[AuditEvent, ...]
    before: tuple[Statement, ...]
    future: asyncio.Future[list[ChainEntry]]


class AuditWriter:
    """An asyncio-friendly batching front of an ``AuditLog``; start it, then ``append``."""

    def __init__(
        self,
        log: AuditLog,
        *,
        max_batch: int = MAX_BATCH,
        commit: Callable[..., Awaitable[list[ChainEntry]]] | None = None,
    ) -> None:
        """``commit(events)`` replaces the database commit (tests); it is called with
        ``before=`` too when a batch carries statements."""
        self._log = log
        self._max_batch = max_batch
        self._commit = commit or self._commit_in_thread
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.split_batches = 0

    async def _commit_in_thread(self, events: Sequence[AuditEvent],
                                before: Sequence[Statement] = ()) -> list[ChainEntry]:
        return await asyncio.to_thread(self._log.record_many, events, before=before)

    async def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    @property
    def running(self) -> bool:
        return self._queue is not None and self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        """Events queued and not yet committed (a metric: a growing queue means the
        database is not keeping up)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def append(self, event: AuditEvent) -> ChainEntry:
        """Returns once the batch holding ``event`` has committed; raises AuditError if it
        did not, so the caller can fail closed."""
        return (await self.append_many([event]))[0]

    async def append_many(self, events: Sequence[AuditEvent], *,
                          before: Sequence[Statement] = ()) -> list[ChainEntry]:
        """Commit ``events`` (in this order, adjacent in the chain) and ``before`` as one
        unit of a batch; returns once committed, raises AuditError if not."""
        if not self.running or self._queue is None:
            raise AuditError("the audit writer is not running")
        future: asyncio.Future[list[ChainEntry]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(tuple(events), tuple(before), future))
        return await future

    async def close(self) -> None:
        """Commit everything already queued, then stop."""
        if self._task is None or self._queue is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def __aenter__(self) -> AuditWriter:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._commit_or_split(batch)
            finally:
                for _ in batch:
                    queue.task_done()
                # Not held while waiting for the next event (after a burst of session ends,
                # a batch of their events would stay in memory until the next append).
                del batch

    async def _commit_or_split(self, batch: list[_Pending]) -> None:
        events = [event for pending in batch for event in pending.events]
        before = [statement for pending in batch for statement in pending.before]
        kwargs: dict[str, Any] = {"before": before} if before else {}
        try:
            entries = await self._commit(events, **kwargs)
        except Exception as exc:  # every waiter must hear about the failure
            if len(batch) > 1:
                self.split_batches += 1
                middle = len(batch) // 2
                await self._commit_or_split(batch[:middle])
                await self._commit_or_split(batch[middle:])
                return
            error = exc if isinstance(exc, AuditError) else AuditError(
                f"cannot write the audit log: {exc}")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        else:
            self.batches += 1
            start = 0
            for pending in batch:
                end = start + len(pending.events)
                if not pending.future.done():
                    pending.future.set_result(entries[start:end])
                start = end
