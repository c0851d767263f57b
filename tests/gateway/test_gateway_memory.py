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


def _release_times(releaser_kwargs: dict[str, float],
                   endings: list[float], releases: int) -> list[float]:
    """Loop times of the first ``releases`` releases while sessions end at ``endings``
    (seconds after the start)."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        times: list[float] = []
        enough = asyncio.Event()

        def release() -> bool:
            times.append(loop.time() - start)
            if len(times) == releases:
                enough.set()
            return True

        releaser = MemoryReleaser(release=release, **releaser_kwargs)
        for at in endings:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            releaser.session_ended()
        await asyncio.wait_for(enough.wait(), timeout=10)
        releaser.close()
        return times

    return asyncio.run(scenario())


def test_releases_are_spaced_by_the_minimum_interval() -> None:
    # A full collection costs tens of milliseconds with many live sessions: sessions that end
    # a few seconds apart must not pay one each.
    times = _release_times({"quiet": 0.02, "min_interval": 0.5, "max_wait": 5.0},
                           endings=[0.0, 0.1, 0.2], releases=2)
    # asyncio may run a timer up to its clock resolution early
    assert times[1] - times[0] >= 0.5 - 0.01


def test_a_steady_stream_of_endings_still_releases_within_the_maximum_wait() -> None:
    # Endings every 50 ms never leave 200 ms of quiet; the release must not wait for ever.
    endings = [i * 0.05 for i in range(40)]
    times = _release_times({"quiet": 0.2, "min_interval": 0.0, "max_wait": 0.5},
                           endings=endings, releases=1)
    assert 0.5 - 0.01 <= times[0] < 1.9  # before the stream (2 s) stopped
