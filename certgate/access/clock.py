"""Where decisions read the time: injected, so tests move time instead of sleeping.

Every decision takes its ``at`` from a ``Clock``. The gateway's re-check scheduler also asks
the clock how long to wait for the next known time boundary, and listens for a fake clock
being moved, so a test that advances time sees expiry act at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def on_jump(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) whenever time moves other than by itself."""
        ...


class SystemClock:
    """The real time. Time never jumps here (NTP steps are absorbed by the next check)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def on_jump(self, callback: Callable[[], None]) -> None:
        return None


class FakeClock:
    """A clock that only moves when told to; listeners hear every move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def on_jump(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            now, listeners = self._now, list(self._listeners)
        for listener in listeners:
            listener()
        return now

    def set(self, at: datetime) -> None:
        with self._lock:
            self._now = at.astimezone(UTC)
            listeners = list(self._listeners)
        for listener in listeners:
            listener()


SYSTEM_CLOCK = SystemClock()
