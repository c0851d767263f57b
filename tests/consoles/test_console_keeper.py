"""Kept consoles: held with nobody attached, logged, reconnected with backoff, gaps noted."""

from __future__ import annotations

import asyncio

import pytest
from console_testing import run
from test_console_hub import FakeConsole, next_chunk

from certgate.consoles import ConsoleHub, ConsoleUnavailable, UnixSocketConsole
from certgate.consoles.keeper import Backoff
from certgate.consoles.mux import Moderation, WriteMode

SERIAL = UnixSocketConsole("/run/vm01.sock")


class FlakyOpener:
    """Opens fake consoles; refuses while ``down`` (the VM is not running)."""

    def __init__(self) -> None:
        self.opened: list[FakeConsole] = []
        self.down = False
        self.refused = 0
        self.new = asyncio.Event()
        self.attempt = asyncio.Event()

    async def wait_refused(self, count: int) -> None:
        while self.refused < count:
            self.attempt.clear()
            await asyncio.wait_for(self.attempt.wait(), 5)

    async def __call__(self, target, **kwargs) -> FakeConsole:
        if self.down:
            self.refused += 1
            self.attempt.set()
            raise ConsoleUnavailable(f"vm console {target}: connection refused")
        console = FakeConsole()
        self.opened.append(console)
        self.new.set()
        return console

    async def wait_opened(self, count: int) -> FakeConsole:
        while len(self.opened) < count:
            self.new.clear()
            await asyncio.wait_for(self.new.wait(), 5)
        return self.opened[count - 1]


class MemoryLog:
    def __init__(self) -> None:
        self.data = b""
        self.notes: list[str] = []
        self.changed = asyncio.Event()

    def output(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.changed.set()

    async def wait_for(self, predicate) -> None:
        while not predicate():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


def kept_hub(opener, console_log, gaps=None, **kwargs) -> ConsoleHub:
    async def on_gap(event, details):
        if gaps is not None:
            gaps.append((event, details))

    return ConsoleHub(SERIAL, opener=opener, console_log=console_log, on_event=on_gap,
                      backoff=Backoff(initial=0.01, maximum=0.05), **kwargs)


def test_output_with_nobody_attached_is_logged_and_replayed_on_attach():
    async def body():
        opener, console_log = FlakyOpener(), MemoryLog()
        hub = kept_hub(opener, console_log)
        await hub.start_keeping()
        backend = await opener.wait_opened(1)
        backend.output.put_nowait(b"kernel panic at 3 a.m.\r\nMARK\r\n")
        await console_log.wait_for(lambda: b"MARK" in console_log.data)
        assert hub.session_ids == ()
        alice = await hub.attach("alice", can_interact=True, user="alice")
        assert await next_chunk(alice) == b"kernel panic at 3 a.m.\r\nMARK\r\n"
        await alice.detach()
        assert not backend.closed  # kept with nobody attached
        await hub.close()
        assert backend.closed

    run(body())


def test_keeper_reconnects_after_the_vm_goes_away_and_notes_the_gap():
    async def body():
        opener, console_log, gaps = FlakyOpener(), MemoryLog(), []
        hub = kept_hub(opener, console_log, gaps)
        await hub.start_keeping()
        first = await opener.wait_opened(1)
        alice = await hub.attach("alice", can_interact=True, user="alice")
        opener.down = True
        first.output.put_nowait(b"")  # QEMU killed
        notice = await asyncio.wait_for(anext(alice), 5)
        assert notice == (b"\r\n[certgate: console connection lost (vm console "
                          b"unix:/run/vm01.sock hung up); reconnecting]\r\n")
        await alice.send(b"typed into the void\r")
        assert alice.stats.input_dropped_bytes == len(b"typed into the void\r")
        await opener.wait_refused(2)
        opener.down = False
        second = await opener.wait_opened(2)
        notice = await asyncio.wait_for(anext(alice), 5)
        assert notice.startswith(b"\r\n[certgate: console reconnected after ")
        await alice.send(b"uptime\r")
        assert second.written == b"uptime\r" and first.written == b""
        assert not alice.ended
        await console_log.wait_for(lambda: any("reconnected" in n for n in console_log.notes))
        assert console_log.notes[0] == "console kept by the gateway"
        assert console_log.notes[1] == ("console connection lost: vm console "
                                        "unix:/run/vm01.sock hung up; reconnecting")
        assert console_log.notes[2].startswith("console reconnected after ")
        assert [event for event, _ in gaps] == ["console.keeper.lost",
                                                "console.keeper.restored"]
        assert gaps[1][1]["attempts"] >= 3
        await hub.close()

    run(body())


def test_a_vm_down_at_start_is_kept_trying_and_attaches_are_refused_meanwhile():
    async def body():
        opener, console_log, gaps = FlakyOpener(), MemoryLog(), []
        opener.down = True
        hub = kept_hub(opener, console_log, gaps)
        await hub.start_keeping()
        await opener.wait_refused(3)
        with pytest.raises(ConsoleUnavailable, match="connection refused"):
            await hub.attach("alice", can_interact=True, user="alice")
        opener.down = False
        backend = await opener.wait_opened(1)
        await hub.connected.wait()
        alice = await hub.attach("alice", can_interact=True, user="alice")
        backend.output.put_nowait(b"login: ")
        assert await next_chunk(alice) == b"login: "
        assert console_log.notes[0].startswith("console unavailable: ")
        assert gaps[0][0] == "console.keeper.lost" and gaps[-1][0] == "console.keeper.restored"
        await hub.close()

    run(body())


def test_exclusive_keyboard_and_force_through_the_hub():
    async def body():
        opener, console_log = FlakyOpener(), MemoryLog()
        hub = kept_hub(opener, console_log, write_mode=WriteMode.EXCLUSIVE)
        await hub.start_keeping()
        backend = await opener.wait_opened(1)
        await hub.connected.wait()
        alice = await hub.attach("a", can_interact=True, user="alice")
        bob = await hub.attach("b", can_interact=True, can_force=True, user="bob")
        await alice.send(b"A")
        await bob.send(b"B")
        assert backend.written == b"A"
        bob.take(force=True)
        await bob.send(b"C")
        await alice.send(b"D")
        assert backend.written == b"AC"
        seen = b""
        while b"took the keyboard" not in seen:
            seen += await asyncio.wait_for(anext(alice), 5)
        assert b"[certgate: bob took the keyboard; you are now watching]" in seen
        await hub.close()

    run(body())


def test_moderated_session_waits_for_an_observer_through_the_hub():
    async def body():
        opener, console_log = FlakyOpener(), MemoryLog()
        hub = kept_hub(opener, console_log)
        await hub.start_keeping()
        backend = await opener.wait_opened(1)
        await hub.connected.wait()
        alice = await hub.attach("a", can_interact=True, user="alice",
                                 moderation=Moderation("role=security"))
        await alice.send(b"rm -rf /\r")
        assert backend.written == b""
        await hub.attach("s", can_interact=False, user="sam", tags={"role=security"})
        await alice.send(b"ls\r")
        assert backend.written == b"ls\r"
        await hub.close()

    run(body())


def test_keeping_takes_over_an_open_on_demand_connection_without_a_second_one():
    async def body():
        opener, console_log = FlakyOpener(), MemoryLog()
        hub = kept_hub(opener, console_log)
        alice = await hub.attach("alice", can_interact=True, user="alice")
        first = await opener.wait_opened(1)
        await hub.start_keeping()
        first.output.put_nowait(b"still the same line\r\n")
        assert await next_chunk(alice) == b"still the same line\r\n"
        await alice.detach()
        assert len(opener.opened) == 1 and not first.closed
        await console_log.wait_for(lambda: b"still the same line" in console_log.data)
        await hub.close()
        assert first.closed

    run(body())
