"""ConsoleHub: one backend connection shared by sessions (or one per session for ssh://)."""

import asyncio

import pytest
from console_testing import run

from certgate.consoles import (
    ConsoleClosed,
    ConsoleHub,
    EndReason,
    SshConsole,
    UnixSocketConsole,
)

SERIAL = UnixSocketConsole("/run/vm01.sock")


class FakeConsole:
    """A backend that records what the hub does to it; tests feed its output."""

    def __init__(self) -> None:
        self.output: asyncio.Queue[bytes] = asyncio.Queue()
        self.written = b""
        self.breaks = 0
        self.sizes: list[tuple[int, int]] = []
        self.closed = False
        self.end_reason = "vm console unix:/run/vm01.sock hung up"

    async def read(self) -> bytes:
        return await self.output.get()

    async def write(self, data: bytes) -> None:
        self.written += data

    async def resize(self, cols: int, rows: int) -> None:
        self.sizes.append((cols, rows))

    async def send_break(self) -> bool:
        self.breaks += 1
        return True

    async def close(self) -> None:
        self.closed = True


class FakeOpener:
    def __init__(self) -> None:
        self.opened: list[FakeConsole] = []

    async def __call__(self, target, **kwargs) -> FakeConsole:
        console = FakeConsole()
        self.opened.append(console)
        return console


async def next_chunk(attachment) -> bytes:
    """The next chunk of guest output (notices to the user are skipped)."""
    while True:
        chunk = await asyncio.wait_for(anext(attachment), 5)
        if not chunk.startswith(b"\r\n[certgate: "):
            return chunk


def test_sessions_share_one_backend_and_see_the_same_output():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener)
        alice = await hub.attach("alice", can_interact=True)
        backend = opener.opened[0]
        backend.output.put_nowait(b"login: ")
        assert await next_chunk(alice) == b"login: "
        bob = await hub.attach("bob", can_interact=False)
        assert await next_chunk(bob) == b"login: "  # scrollback replay
        backend.output.put_nowait(b"root\r\n")
        assert await next_chunk(alice) == b"root\r\n"
        assert await next_chunk(bob) == b"root\r\n"
        assert len(opener.opened) == 1
        await alice.detach()
        await bob.detach()

    run(body())


def test_view_only_input_never_reaches_the_backend():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener)
        alice = await hub.attach("alice", can_interact=True)
        bob = await hub.attach("bob", can_interact=False)
        await bob.send(b"reboot -f\r")
        await alice.send(b"uptime\r")
        assert opener.opened[0].written == b"uptime\r"
        assert bob.stats.input_dropped_bytes == len(b"reboot -f\r")
        assert alice.stats.bytes_to_guest == len(b"uptime\r")
        assert await bob.send_break() is False
        assert opener.opened[0].breaks == 0

    run(body())


def test_break_is_passed_on_only_with_the_break_privilege():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener)
        typist = await hub.attach("typist", can_interact=True)
        operator = await hub.attach("operator", can_interact=True, can_break=True)
        assert await typist.send_break() is False
        assert await operator.send_break() is True
        assert opener.opened[0].breaks == 1

    run(body())


def test_backend_hangup_ends_every_attachment_with_the_reason():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener)
        alice = await hub.attach("alice", can_interact=True)
        bob = await hub.attach("bob", can_interact=False)
        opener.opened[0].output.put_nowait(b"")  # EOF
        assert [chunk async for chunk in alice if not chunk.startswith(b"\r\n[certgate")] == []
        assert [chunk async for chunk in bob if not chunk.startswith(b"\r\n[certgate")] == []
        assert alice.end_reason == bob.end_reason == "vm console unix:/run/vm01.sock hung up"
        assert opener.opened[0].closed
        assert not hub.backend_open
        with pytest.raises(ConsoleClosed):
            await alice.send(b"x")
        carol = await hub.attach("carol", can_interact=True)  # a fresh connection
        assert len(opener.opened) == 2
        await carol.detach()

    run(body())


def test_backend_is_closed_when_the_last_session_detaches():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener)
        alice = await hub.attach("alice", can_interact=True)
        bob = await hub.attach("bob", can_interact=False)
        await alice.detach()
        assert not opener.opened[0].closed
        stats = await bob.detach()
        assert opener.opened[0].closed
        assert bob.end_reason == EndReason.DETACHED.value
        assert stats is bob.stats
        assert hub.session_ids == ()

    run(body())


def test_ssh_targets_get_one_upstream_connection_per_session():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SshConsole("root", "127.0.0.1", 2222), opener=opener)
        alice = await hub.attach("alice", can_interact=True)
        bob = await hub.attach("bob", can_interact=True)
        assert len(opener.opened) == 2
        opener.opened[0].output.put_nowait(b"alice's shell")
        assert await next_chunk(alice) == b"alice's shell"
        await bob.send(b"whoami\r")
        assert opener.opened[1].written == b"whoami\r" and opener.opened[0].written == b""
        await alice.detach()
        assert opener.opened[0].closed and not opener.opened[1].closed
        await bob.detach()

    run(body())


def test_a_session_that_stops_reading_is_cut_off_not_buffered_forever():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener, max_lag=1000)
        reader = await hub.attach("reader", can_interact=True)
        stalled = await hub.attach("stalled", can_interact=False)
        for _ in range(5):
            opener.opened[0].output.put_nowait(b"x" * 300)
            assert await next_chunk(reader) == b"x" * 300
        assert stalled.end_reason == EndReason.TOO_SLOW.value
        assert not reader.ended

    run(body())


def test_hub_close_ends_everything_with_the_reason():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener)
        alice = await hub.attach("alice", can_interact=True)
        await hub.close("gateway restarting")
        assert alice.end_reason == "gateway restarting"
        assert opener.opened[0].closed

    run(body())


def test_interactive_resize_reaches_the_backend_view_only_does_not():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener)
        viewer = await hub.attach("viewer", can_interact=False)
        typist = await hub.attach("typist", can_interact=True, cols=100, rows=30)
        await viewer.resize(50, 10)
        await typist.resize(120, 40)
        assert opener.opened[0].sizes == [(100, 30), (120, 40)]

    run(body())


def test_a_slow_interactive_reader_gets_every_byte_and_the_backend_waits_for_it():
    async def body():
        opener = FakeOpener()
        hub = ConsoleHub(SERIAL, opener=opener, max_lag=1000, pause_lag=500)
        reader = await hub.attach("reader", can_interact=True)
        backend = opener.opened[0]
        for index in range(10):
            backend.output.put_nowait(bytes([65 + index]) * 300)
        await asyncio.sleep(0.05)
        # The pump stopped after the reader fell 500 bytes behind: the rest waits unread.
        assert backend.output.qsize() >= 7
        received = b""
        while len(received) < 3000:
            received += await next_chunk(reader)
        assert received == b"".join(bytes([65 + i]) * 300 for i in range(10))
        assert not reader.ended

    run(body())
