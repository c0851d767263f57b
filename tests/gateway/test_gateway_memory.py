"""Memory freed by ended sessions goes back to the system, once, when sessions stop ending."""

from __future__ import annotations

import asyncio
import gc
import weakref

from certgate.gateway.memory import MemoryReleaser, release_free_memory


def test_glibc_trim_is_available_here() -> None:
    # Debian's glibc has malloc_trim; elsewhere the releaser quietly does nothing.
    assert release_free_memory() is True


class _Held:
    """Stands for a session's objects: kept alive only by a reference cycle."""

    def __init__(self) -> None:
        self.me = self


def test_release_frees_what_only_reference_cycles_held() -> None:
    # An ended session's asyncssh connection, channel and tasks reference each other; the
    # cycle collector alone frees them, and the trim can give back only what is freed.
    gc.collect()
    gc.disable()
    try:
        held = _Held()
        gone = weakref.ref(held)
        del held
        assert gone() is not None  # garbage, but not freed yet
        release_free_memory()
        assert gone() is None
    finally:
        gc.enable()


def test_a_burst_of_ended_sessions_releases_memory_once_after_it() -> None:
    async def scenario() -> tuple[int, int]:
        released = asyncio.Event()
        calls = 0

        def release() -> bool:
            nonlocal calls
            calls += 1
            released.set()
            return True

        releaser = MemoryReleaser(quiet=0.05, release=release)
        for _ in range(100):
            releaser.session_ended()
        await asyncio.wait_for(released.wait(), timeout=10)
        count_after_burst = calls
        releaser.session_ended()
        releaser.close()  # a closed releaser has nothing pending
        await asyncio.sleep(0.1)
        return count_after_burst, calls

    after_burst, total = asyncio.run(scenario())
    assert after_burst == 1
    assert total == 1
