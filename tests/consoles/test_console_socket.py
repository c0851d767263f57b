"""unix: and tcp: consoles against a stand-in for a QEMU chardev socket server."""

import asyncio
import socket
import struct

import pytest
from console_testing import read_until, run

from certgate.consoles import (
    ConsoleClosed,
    ConsoleUnavailable,
    TcpConsole,
    UnixSocketConsole,
    open_console,
)

QEMU_TELNET_GREETING = b"\xff\xfb\x01\xff\xfb\x03\xff\xfb\x00\xff\xfd\x00"


def test_refused_right_after_the_socket_appears_is_retried(short_tmp):
    path = short_tmp / "vm.sock"

    async def body():
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))  # the file exists, nobody listens yet: connects are refused
        received = asyncio.Queue()

        async def serve(reader, writer):
            writer.write(b"login: ")
            await writer.drain()
            received.put_nowait(await reader.read(100))
            writer.close()

        async def listen_later():
            await asyncio.sleep(0.3)
            return await asyncio.start_unix_server(serve, sock=sock)

        server_task = asyncio.create_task(listen_later())
        console = await open_console(UnixSocketConsole(str(path)), connect_timeout=5)
        server = await server_task
        try:
            await read_until(console.read, b"login: ")
            await console.write(b"root\r")
            assert await received.get() == b"root\r"
            assert await console.read() == b""  # the server hung up
            assert console.end_reason == f"vm console unix:{path} hung up"
            assert await console.send_break() is False  # raw socket: no way to send one
        finally:
            await console.close()
            server.close()

    run(body())


def test_refused_until_the_timeout_is_one_clear_line(short_tmp):
    path = short_tmp / "vm.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    with pytest.raises(ConsoleUnavailable) as info:
        run(open_console(UnixSocketConsole(str(path)), connect_timeout=0.3))
    sock.close()
    assert str(info.value) == f"vm console unix:{path}: connection refused"


def test_missing_socket_fails_at_once(short_tmp):
    with pytest.raises(ConsoleUnavailable, match="no such socket"):
        run(
            open_console(UnixSocketConsole(str(short_tmp / "absent.sock")), connect_timeout=5),
            timeout=1,
        )


def test_tcp_console_on_loopback_with_telnet_break():
    async def body():
        got = asyncio.Queue()

        async def serve(reader, writer):
            writer.write(QEMU_TELNET_GREETING + b"login: ")
            await writer.drain()
            while data := await reader.read(100):
                got.put_nowait(data)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        console = await open_console(TcpConsole("127.0.0.1", port, telnet=True))
        try:
            assert await read_until(console.read, b"login: ") == b"login: "
            await console.write(b"a\xffb")
            assert await console.send_break() is True
            seen = b""
            while not seen.endswith(b"\xff\xf3"):
                seen += await got.get()
            refusals = b"\xff\xfe\x01\xff\xfe\x03\xff\xfd\x00\xff\xfb\x00"
            assert seen == refusals + b"a\xff\xffb" + b"\xff\xf3"
        finally:
            await console.close()
            server.close()

    run(body())


def test_bulk_output_is_held_back_at_the_buffer_bound_and_arrives_whole(short_tmp):
    """A guest printing faster than the gateway reads is held back by the socket (reading
    pauses at the buffer bound, the guest's side stays full); every byte still arrives, in
    order, and the hang-up after it ends the stream."""
    from certgate.consoles import socket_backend

    path = short_tmp / "vm.sock"
    payload = bytes(range(256)) * (12 * 1024)  # 3 MiB, well past the bound
    held_back = asyncio.Event()

    async def body():
        async def serve(reader, writer):
            writer.write(payload)
            while writer.transport.get_write_buffer_size() == 0:
                await asyncio.sleep(0.01)  # the kernel took what it could; the rest waits
            held_back.set()
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(serve, str(path))
        console = await open_console(UnixSocketConsole(str(path)))
        try:
            await asyncio.wait_for(held_back.wait(), 10)
            received = b""
            while data := await console.read():
                assert len(data) <= 3 * socket_backend._BUFFER_LIMIT + 256 * 1024
                received += data
            assert received == payload
            assert console.end_reason == f"vm console unix:{path} hung up"
        finally:
            await console.close()
            server.close()

    run(body())


def test_a_reset_connection_ends_the_stream_with_the_reason(short_tmp):
    async def body():
        async def serve(reader, writer):
            writer.write(b"boot\r\n")
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST instead of FIN

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        console = await open_console(TcpConsole("127.0.0.1", port))
        try:
            seen = b""
            while data := await console.read():
                seen += data
            assert seen in (b"", b"boot\r\n")
            assert console.end_reason == (f"vm console tcp:127.0.0.1:{port}: "
                                          "Connection reset by peer")
            with pytest.raises(ConsoleClosed):
                await console.write(b"x")
        finally:
            await console.close()
            server.close()

    run(body())
