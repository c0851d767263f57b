"""Helpers shared by the console tests (a uniquely named module: ``conftest`` is not importable
reliably when several test directories have one)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    """Run one async test body with a hard timeout (no pytest-asyncio here)."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def read_until(
    read: Callable[[], Awaitable[bytes]], pattern: bytes | re.Pattern[bytes], timeout: float = 10.0
) -> bytes:
    """Collect chunks from ``read`` until ``pattern`` appears; fail with what arrived."""
    buffer = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def found() -> bool:
        if isinstance(pattern, bytes):
            return pattern in buffer
        return pattern.search(buffer) is not None

    while not found():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"{pattern!r} not seen; got {buffer[-500:]!r}")
        try:
            chunk = await asyncio.wait_for(read(), remaining)
        except TimeoutError:
            continue
        if not chunk:
            raise AssertionError(f"EOF before {pattern!r}; got {buffer[-500:]!r}")
        buffer += chunk
    return buffer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
