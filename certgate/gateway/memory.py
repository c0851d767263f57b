"""Giving memory back to the system after sessions end.

Why: a gateway that served 1,000 sessions kept their memory after they ended: glibc's malloc
holds freed blocks (the sessions' buffers, asyncssh's and the recorder's) in its heap for
reuse, so the process RSS stayed at its peak. ``malloc_trim(0)`` returns the free pages of
every arena to the kernel. It walks the heap (milliseconds with a large one), so it runs
once things have been quiet for a moment after the last session ended, not per session.

A full garbage collection comes first: most of an ended session's objects sit in reference
cycles (asyncssh's connection, channel and process and their owners; tasks and their
coroutines), which only the cycle collector frees, and it may not run for a long while on
its own. Measured with 1,000 ended sessions (bench/live_sessions.py --profile-memory),
trimming without collecting left about 11 KiB per ended session that a collection frees.
What remains after both is mostly CPython's small-object arenas (1 MiB each), which it
returns only when wholly empty: a few long-lived objects made while sessions ran keep them.

The collection is not free (about 50 ms of CPU, and of event-loop pause, with 1,000 live
sessions), so releases are at least ``MIN_INTERVAL_SECONDS`` apart: when sessions end every
few seconds, the gateway pays one release every half minute, not one per ended session. A
steady stream of endings never leaves ``QUIET_SECONDS`` of quiet, so a release waits at most
``MAX_WAIT_SECONDS`` after the first ending it covers.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

QUIET_SECONDS = 2.0
MIN_INTERVAL_SECONDS = 30.0
MAX_WAIT_SECONDS = 60.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    function: Callable[[int], int] = trim
    return function


_MALLOC_TRIM = _load_malloc_trim()


def release_free_memory() -> bool:
    """Free unreachable cycles, then return the allocator's free pages to the kernel; False
    where there is no malloc_trim."""
    gc.collect()
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class MemoryReleaser:
    """Calls ``release_free_memory`` once sessions have stopped ending for a while."""

    def __init__(self, quiet: float = QUIET_SECONDS,
                 release: Callable[[], bool] = release_free_memory, *,
                 min_interval: float = MIN_INTERVAL_SECONDS,
                 max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._quiet = quiet
        self._min_interval = min_interval
        self._max_wait = max_wait
        self._release = release
        self._timer: asyncio.TimerHandle | None = None
        self._pending_since: float | None = None
        self._last_release: float | None = None
        self.releases = 0

    def session_ended(self) -> None:
        """Note that a session ended (re-arms the quiet timer; call from the event loop)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._timer is not None:
            self._timer.cancel()
        if self._pending_since is None:
            self._pending_since = now
        when = min(now + self._quiet, self._pending_since + self._max_wait)
        if self._last_release is not None:
            when = max(when, self._last_release + self._min_interval)
        self._timer = loop.call_at(when, self._run)

    def _run(self) -> None:
        self._timer = None
        self._pending_since = None
        self._last_release = asyncio.get_running_loop().time()
        try:
            if self._release():
                self.releases += 1
        except OSError as exc:  # never let housekeeping hurt the gateway
            log.warning("could not return free memory to the system: %s", exc)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
