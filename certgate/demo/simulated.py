"""A simulated serial console for the demo, used when no QEMU guest can be booted.

It listens on a unix socket like a QEMU chardev and answers like a very small shell, and it
says plainly, in its banner and in every prompt, that it is a simulation, so nobody mistakes
it for a VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
from pathlib import Path

BANNER = (
    "\r\n*** certgate SIMULATED serial console: this is not a real VM ***\r\n"
    "(install qemu-system-x86 and busybox-static and rerun `certgate demo` for a real guest)\r\n"
    "commands: help, uname, whoami, echo TEXT, date, exit\r\n"
)
PROMPT = b"simulated-vm# "


class SimulatedConsole:
    """One shell-like conversation per connection, like a serial line."""

    def __init__(self, socket_path: Path, hostname: str = "simulated-vm") -> None:
        self.socket_path = socket_path
        self.hostname = hostname
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self.socket_path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER.encode() + PROMPT)
        line = bytearray()
        try:
            while data := await reader.read(1024):
                for byte in data:
                    if byte in (13, 10):
                        writer.write(b"\r\n" + self._answer(line.decode(errors="replace")))
                        writer.write(PROMPT)
                        line.clear()
                    elif byte in (8, 127):
                        if line:
                            line.pop()
                            writer.write(b"\b \b")
                    elif byte >= 32:
                        line.append(byte)
                        writer.write(bytes([byte]))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _answer(self, command: str) -> bytes:
        words = command.strip().split(maxsplit=1)
        if not words:
            return b""
        name, rest = words[0], (words[1] if len(words) > 1 else "")
        if name == "help":
            text = "commands: help, uname [-a], whoami, echo TEXT, date, exit"
        elif name == "uname":
            text = (f"Simulated {self.hostname} {platform.release()} (not a real kernel)"
                    if rest == "-a" else "Simulated")
        elif name == "whoami":
            text = "root (simulated)"
        elif name == "echo":
            text = rest
        elif name == "date":
            import datetime

            text = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
        elif name == "exit":
            text = "this console stays up; press Ctrl-] to leave the gateway session"
        else:
            text = f"{name}: not found (simulated console)"
        return (text + "\r\n").encode() if text else b""
