"""Re-deciding live sessions: when the store changes, or when a known time boundary passes.

Nothing here runs per session per second. A gateway wakes when
- the store's change counter moves (PostgreSQL: ``LISTEN certgate_changes``, with a slow poll
  while the listening connection is down; SQLite: one small read of the counter every
  quarter second),
- the earliest time boundary of any live session passes (an AC's or identity's notAfter, a
  time window's edge, the maximum session length, the idle timeout), or
- the injected clock jumps (tests).
On a change every live session is re-decided from one batched snapshot; at a boundary only
the sessions that reached it are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from certgate.access import Clock
from certgate.errors import CertgateError
from certgate.store.changes import CHANNEL, read_counter
from certgate.store.database import Database

log = logging.getLogger(__name__)

SQLITE_POLL = 0.25
"""Seconds between reads of the counter on SQLite (one row, one column). SQLite has no
notifications, so this read sets how soon a revocation made by another process ends a live
session: at one second, the p99 of revocation -> session end sat at the 1 s aim
(bench/live_sessions.py); four reads a second cost the gateway, not each session, ~0.1 % of a
core."""
FALLBACK_POLL = 2.0
"""Seconds between reads of the counter on PostgreSQL while LISTEN is not connected."""
SAFETY_POLL = 30.0
"""Seconds between reads of the counter on PostgreSQL even while LISTEN is connected: a
notification lost in a way nobody noticed is caught within this time."""
RECONNECT_DELAY = 2.0
MAX_SLEEP = 60.0


class ChangeFeed:
    """Tells the gateway when the store's change counter moved."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.changed = asyncio.Event()
        self.counter = 0
        self.listening = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.counter = await asyncio.to_thread(self._read)
        if self.database.dialect == "postgresql":
            self._tasks = [asyncio.create_task(self._listen()),
                           asyncio.create_task(self._poll(postgres=True))]
        else:
            self._tasks = [asyncio.create_task(self._poll(postgres=False))]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _read(self) -> int:
        with self.database.read() as session:
            return read_counter(session)

    async def check(self) -> None:
        """Read the counter once; signal if it moved."""
        try:
            value = await asyncio.to_thread(self._read)
        except CertgateError as exc:
            log.warning("cannot read the change counter: %s", exc)
            self.changed.set()  # fail closed: re-decide (a store error ends sessions)
            return
        if value != self.counter:
            self.counter = value
            self.changed.set()

    async def _poll(self, *, postgres: bool) -> None:
        while True:
            if postgres:
                await asyncio.sleep(SAFETY_POLL if self.listening else FALLBACK_POLL)
            else:
                await asyncio.sleep(SQLITE_POLL)
            await self.check()

    async def _listen(self) -> None:
        import psycopg

        url = self.database.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    await self.check()  # changes made while we were not listening
                    async for _ in conn.notifies():
                        await self.check()
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN %s lost (%s); polling every %.0f s until it is back",
                            CHANNEL, exc, FALLBACK_POLL)
            finally:
                self.listening = False
            await asyncio.sleep(RECONNECT_DELAY)


class Waker:
    """One event the re-check loop waits on, set by the feed, the clock or new sessions."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()

    def wake(self) -> None:
        self.event.set()

    def wake_threadsafe(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
            self.loop.call_soon_threadsafe(self.event.set)


async def wait_for_wake(feed: ChangeFeed, waker: Waker, clock: Clock,
                        deadline: datetime | None) -> bool:
    """Sleep until the store changed (True), or the deadline passed / time jumped (False)."""
    timeout = MAX_SLEEP
    if deadline is not None:
        timeout = min(MAX_SLEEP, max(0.0, (deadline - clock.now()).total_seconds()))
    await asyncio.sleep(0)  # always yield: a past deadline must not starve the loop
    if not feed.changed.is_set() and timeout > 0:
        changed = asyncio.create_task(feed.changed.wait())
        woken = asyncio.create_task(waker.event.wait())
        try:
            await asyncio.wait([changed, woken], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            woken.cancel()
    waker.event.clear()
    if feed.changed.is_set():
        feed.changed.clear()
        return True
    return False


Terminate = Callable[[str], None]
