"""Console backends: one small interface over sockets, pty commands and upstream SSH.

The hub (``hub.py``) only ever sees ``ConsoleConnection``; ``open_console`` picks the
implementation from the parsed URI. Every failure to open surfaces as ``ConsoleUnavailable``
with one line naming the console, e.g. ``vm console unix:/run/vm01.sock: connection refused``.
"""

from __future__ import annotations

from typing import Protocol

from certgate.consoles.ssh_backend import UpstreamSshOptions, open_ssh_console
from certgate.consoles.uri import (
    ConsoleTarget,
    ExecConsole,
    SshConsole,
    TcpConsole,
    UnixSocketConsole,
)

__all__ = ["ConsoleConnection", "UpstreamSshOptions", "open_console"]


class ConsoleConnection(Protocol):
    """An open VM console: a byte stream plus the few out-of-band signals a terminal has."""

    async def read(self) -> bytes:
        """Next chunk of console output; ``b""`` once the backend hung up or the child exited."""
        ...

    async def write(self, data: bytes) -> None:
        """Send input to the guest; raises ConsoleClosed when the backend is gone."""
        ...

    async def resize(self, cols: int, rows: int) -> None:
        """Change the window size; a no-op where meaningless (a serial socket)."""
        ...

    async def send_break(self) -> bool:
        """Send a serial break; False when this backend cannot carry one."""
        ...

    async def close(self) -> None:
        """Release the backend (idempotent): close sockets, kill child process groups."""
        ...

    @property
    def exit_status(self) -> int | None:
        """Exit status of the console's program (exec, ssh) once it ended; None for sockets."""
        ...

    @property
    def end_reason(self) -> str:
        """One line for users once ``read`` returned ``b""`` (hang-up, exit status)."""
        ...


async def open_console(
    target: ConsoleTarget,
    *,
    term_type: str = "xterm",
    cols: int = 80,
    rows: int = 24,
    ssh_options: UpstreamSshOptions | None = None,
    connect_timeout: float = 5.0,
) -> ConsoleConnection:
    """Open the console ``target`` names; raise ConsoleUnavailable with a one-line reason."""
    # Imported here to keep the module graph a tree: each backend imports only errors/uri.
    from certgate.consoles.pty_backend import open_pty_console
    from certgate.consoles.socket_backend import open_socket_console

    if isinstance(target, UnixSocketConsole | TcpConsole):
        return await open_socket_console(target, connect_timeout=connect_timeout)
    if isinstance(target, ExecConsole):
        return await open_pty_console(target, term_type=term_type, cols=cols, rows=rows)
    if isinstance(target, SshConsole):
        return await open_ssh_console(
            target,
            term_type=term_type,
            cols=cols,
            rows=rows,
            options=ssh_options,
            connect_timeout=connect_timeout,
        )
    raise TypeError(f"not a console target: {target!r}")
