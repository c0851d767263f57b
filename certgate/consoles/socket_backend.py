"""QEMU chardev sockets (``unix:`` and ``tcp:`` consoles).

QEMU serves one client per chardev socket; a second connection is accepted by the kernel
but queued silently until the first leaves, so the hub owns the one connection and shares
it. Right after QEMU creates the socket a connect can be refused: we retry refusals until
``connect_timeout``. A missing socket file fails at once (the VM is not running).
"""

from __future__ import annotations

import asyncio
import contextlib

from certgate.consoles.errors import ConsoleClosed, ConsoleUnavailable
from certgate.consoles.telnet import TelnetCodec
from certgate.consoles.uri import TcpConsole, UnixSocketConsole

_RETRY_INTERVAL = 0.05
_READ_SIZE = 256 * 1024
"""Up to what one socket read hands asyncio (its transports read 256 KiB at most): under bulk
output every chunk costs the hub, the recorder and the SSH channel a fixed overhead, so
fewer, larger chunks cost less CPU per byte; interactive output is unaffected (a read returns
what is there)."""
_BUFFER_LIMIT = 256 * 1024
"""The stream reader stops reading the socket at twice this much unread output."""


class SocketConsoleConnection:
    """A connected chardev socket; speaks minimal telnet when the URI says ``?telnet``."""

    def __init__(
        self,
        target: UnixSocketConsole | TcpConsole,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._target = target
        self._reader = reader
        self._writer = writer
        self._telnet = TelnetCodec() if target.telnet else None
        self._closed = False
        self._end_reason = f"vm console {target} hung up"

    @property
    def exit_status(self) -> int | None:
        return None  # a serial line has no exit status

    @property
    def end_reason(self) -> str:
        return self._end_reason

    async def read(self) -> bytes:
        while True:
            try:
                data = await self._reader.read(_READ_SIZE)
            except (ConnectionError, OSError) as exc:
                self._end_reason = f"vm console {self._target}: {exc.strerror or exc}"
                return b""
            if not data or self._telnet is None:
                return data
            payload, replies = self._telnet.decode(data)
            if replies and not self._writer.is_closing():
                self._writer.write(replies)
            if payload:
                return payload

    async def write(self, data: bytes) -> None:
        if self._closed or self._writer.is_closing():
            raise ConsoleClosed(f"vm console {self._target} is closed")
        if self._telnet is not None:
            data = self._telnet.encode(data)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ConsoleClosed(f"vm console {self._target}: {exc}") from None

    async def resize(self, cols: int, rows: int) -> None:
        """A serial line has no window size; the guest learns it only via ``stty``."""

    async def send_break(self) -> bool:
        if self._telnet is None or self._closed:
            return False
        try:
            self._writer.write(TelnetCodec.break_command())
            await self._writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


async def open_socket_console(
    target: UnixSocketConsole | TcpConsole, *, connect_timeout: float = 5.0
) -> SocketConsoleConnection:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                if isinstance(target, UnixSocketConsole):
                    reader, writer = await asyncio.open_unix_connection(
                        target.path, limit=_BUFFER_LIMIT)
                else:
                    reader, writer = await asyncio.open_connection(
                        target.host, target.port, limit=_BUFFER_LIMIT)
            return SocketConsoleConnection(target, reader, writer)
        except ConnectionRefusedError:
            if loop.time() + _RETRY_INTERVAL >= deadline:
                raise ConsoleUnavailable(f"vm console {target}: connection refused") from None
            await asyncio.sleep(_RETRY_INTERVAL)
        except TimeoutError:
            raise ConsoleUnavailable(
                f"vm console {target}: no connection within {connect_timeout:g}s"
            ) from None
        except FileNotFoundError:
            raise ConsoleUnavailable(
                f"vm console {target}: no such socket (is the VM running?)"
            ) from None
        except OSError as exc:
            raise ConsoleUnavailable(f"vm console {target}: {exc.strerror or exc}") from None
