"""``ssh://`` consoles: a shell on the guest's own sshd, one upstream connection per session.

Sharing one upstream shell among gateway users would let one user act inside another's
login, so the hub opens a separate connection for each session (see hub.py).

Host keys are always verified: ``UpstreamSshOptions`` must name a known_hosts file or a
trusted host CA; with neither, opening fails instead of silently trusting any server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from certgate.consoles.errors import ConsoleClosed, ConsoleUnavailable
from certgate.consoles.uri import SshConsole

_READ_SIZE = 65536


@dataclass(frozen=True)
class UpstreamSshOptions:
    """How the gateway authenticates to guests and how it checks their host keys.

    ``client_keys`` is passed to asyncssh as is: private key paths (a ``-cert.pub`` next to
    a key is picked up), ``SSHKey`` objects or ``(key, certificate)`` pairs.
    ``trusted_host_ca_keys`` are public key files of CAs whose host certificates are trusted
    for any guest host name. ``command`` runs instead of the login shell when set.
    """

    client_keys: Sequence[Any] = ()
    known_hosts: Path | None = None
    trusted_host_ca_keys: Sequence[Path] = ()
    command: str | None = None

    def known_hosts_for_asyncssh(self) -> asyncssh.SSHKnownHosts:
        lines: list[str] = []
        if self.known_hosts is not None:
            lines.append(Path(self.known_hosts).read_text())
        for ca_path in self.trusted_host_ca_keys:
            key = Path(ca_path).read_text().split()
            lines.append(f"@cert-authority * {' '.join(key[:2])}")
        if not lines:
            raise ValueError("no known_hosts file or trusted host CA")
        return asyncssh.import_known_hosts("\n".join(lines) + "\n")


class SshConsoleConnection:
    """An interactive process (with a pty) on an upstream SSH server."""

    def __init__(
        self,
        target: SshConsole,
        connection: asyncssh.SSHClientConnection,
        process: asyncssh.SSHClientProcess[bytes],
    ) -> None:
        self._target = target
        self._connection = connection
        self._process = process
        self._closed = False

    @property
    def exit_status(self) -> int | None:
        return self._process.exit_status

    @property
    def end_reason(self) -> str:
        status = self._process.exit_status
        signal = self._process.exit_signal
        if signal is not None:
            return f"vm console {self._target}: remote shell killed by signal {signal[0]}"
        if status is not None:
            return f"vm console {self._target}: remote shell exited with status {status}"
        return f"vm console {self._target}: connection closed"

    async def read(self) -> bytes:
        try:
            data = await self._process.stdout.read(_READ_SIZE)
        except (asyncssh.Error, OSError):
            return b""
        if not data:
            # The exit-status message precedes channel close; let it land before reporting.
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                await asyncio.wait_for(self._process.wait_closed(), 1.0)
        return data

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConsoleClosed(f"vm console {self._target} is closed")
        try:
            self._process.stdin.write(data)
            await self._process.stdin.drain()
        except (asyncssh.Error, OSError) as exc:
            raise ConsoleClosed(f"vm console {self._target}: {exc}") from None

    async def resize(self, cols: int, rows: int) -> None:
        if not self._closed:
            with contextlib.suppress(asyncssh.Error, OSError):
                self._process.change_terminal_size(cols, rows)

    async def send_break(self) -> bool:
        if self._closed:
            return False
        try:
            self._process.send_break(500)
        except (asyncssh.Error, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._process.close()
        self._connection.close()
        with contextlib.suppress(asyncssh.Error, OSError):
            await self._connection.wait_closed()


async def open_ssh_console(
    target: SshConsole,
    *,
    term_type: str = "xterm",
    cols: int = 80,
    rows: int = 24,
    options: UpstreamSshOptions | None = None,
    connect_timeout: float = 5.0,
) -> SshConsoleConnection:
    if options is None:
        raise ConsoleUnavailable(
            f"vm console {target}: no upstream SSH options (known_hosts or host CA) configured"
        )
    try:
        known_hosts = options.known_hosts_for_asyncssh()
    except (OSError, ValueError) as exc:
        raise ConsoleUnavailable(f"vm console {target}: cannot verify host keys: {exc}") from None
    try:
        connection = await asyncio.wait_for(
            asyncssh.connect(
                target.host,
                target.port,
                username=target.user,
                known_hosts=known_hosts,
                client_keys=list(options.client_keys),  # never ~/.ssh defaults
                agent_path=None,
                config=(),
                password=None,
                kbdint_auth=False,
                preferred_auth="publickey",
            ),
            connect_timeout,
        )
    except TimeoutError:
        raise ConsoleUnavailable(
            f"vm console {target}: no SSH session within {connect_timeout:g}s"
        ) from None
    except asyncssh.HostKeyNotVerifiable as exc:
        raise ConsoleUnavailable(f"vm console {target}: host key not trusted: {exc}") from None
    except (asyncssh.Error, OSError) as exc:
        raise ConsoleUnavailable(f"vm console {target}: {exc}") from None
    try:
        process = await connection.create_process(
            options.command,
            term_type=term_type,
            term_size=(cols, rows),
            encoding=None,
            stderr=asyncssh.STDOUT,
        )
    except (asyncssh.Error, OSError) as exc:
        connection.close()
        raise ConsoleUnavailable(f"vm console {target}: {exc}") from None
    return SshConsoleConnection(target, connection, process)
