"""``exec:`` consoles: a console command (``virsh console``, ``xl console``) in a pty.

The command gets a real terminal: the pty slave is its stdin/stdout/stderr and its
controlling tty in a new session, so a resize on the master reaches it as SIGWINCH and a
hang-up reaches its whole process group. It gets a minimal environment (PATH, HOME, LANG,
TERM) so gateway secrets such as ``CERTGATE_CA_PASSPHRASE`` never leak into it.

A break cannot be sent: ``tcsendbreak`` on a pty master does nothing, and the console
commands have their own escape sequences, so ``send_break`` returns False.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import termios

from certgate.consoles.errors import ConsoleClosed, ConsoleUnavailable
from certgate.consoles.uri import ExecConsole

_READ_SIZE = 65536
HANGUP_GRACE = 1.0


MAX_WINDOW = 0xFFFF  # struct winsize holds unsigned shorts; SSH clients may send any uint32


def _set_window_size(fd: int, cols: int, rows: int) -> None:
    rows, cols = (max(1, min(int(n), MAX_WINDOW)) for n in (rows, cols))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


SETSID = shutil.which("setsid") or "/usr/bin/setsid"
"""util-linux ``setsid --ctty``: a new session whose controlling terminal is the pty on fd 0.

It replaces a ``preexec_fn`` (unsafe in the gateway, which runs threads: a forked child could
block on a lock another thread held) with an exec of a tiny, standard program."""


def _child_environment(term_type: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "TERM": term_type}
    for name in ("HOME", "LANG", "LC_ALL", "USER", "LOGNAME"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class PtyConsoleConnection:
    """A child process group on a pty; EOF when the child side of the pty is gone."""

    def __init__(self, target: ExecConsole, process: subprocess.Popen[bytes], master: int) -> None:
        self._target = target
        self._process = process
        self._master = master
        self._closed = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def exit_status(self) -> int | None:
        return self._process.poll()

    @property
    def end_reason(self) -> str:
        status = self._process.poll()
        if status is None:
            return f"vm console {self._target} closed its terminal"
        if status < 0:
            return f"vm console {self._target} was killed by signal {-status}"
        return f"vm console {self._target} exited with status {status}"

    async def read(self) -> bytes:
        while not self._closed:
            try:
                return os.read(self._master, _READ_SIZE)
            except BlockingIOError:
                await self._wait(readable=True)
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave fd closed: the child is gone
                    return b""
                raise
        return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._closed:
                raise ConsoleClosed(f"vm console {self._target} is closed")
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await self._wait(readable=False)
                continue
            except OSError as exc:
                raise ConsoleClosed(f"vm console {self._target}: {exc.strerror}") from None
            view = view[written:]

    async def resize(self, cols: int, rows: int) -> None:
        if not self._closed:
            _set_window_size(self._master, cols, rows)

    async def send_break(self) -> bool:
        return False

    async def close(self) -> None:
        """Hang up the child's process group, SIGKILL it after a grace period, and reap."""
        if self._closed:
            return
        self._closed = True
        pgid = self._process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGHUP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANGUP_GRACE
        while self._process.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.02)
        # Also catches group members that ignored SIGHUP after the leader left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        while self._process.poll() is None:
            await asyncio.sleep(0.01)
        loop.remove_reader(self._master)
        loop.remove_writer(self._master)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        os.close(self._master)

    async def _wait(self, *, readable: bool) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._waiters.add(ready)

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if readable:
            loop.add_reader(self._master, wake)
        else:
            loop.add_writer(self._master, wake)
        try:
            await ready
        finally:
            self._waiters.discard(ready)
            if not self._closed:
                if readable:
                    loop.remove_reader(self._master)
                else:
                    loop.remove_writer(self._master)


async def open_pty_console(
    target: ExecConsole, *, term_type: str = "xterm", cols: int = 80, rows: int = 24
) -> PtyConsoleConnection:
    master, slave = os.openpty()
    try:
        _set_window_size(slave, cols, rows)
        os.set_blocking(master, False)
        try:
            if shutil.which(target.argv[0]) is None and not os.path.exists(target.argv[0]):
                raise FileNotFoundError(2, "command not found")
            process = subprocess.Popen(
                # Not start_new_session: setsid(1) forks when already a group leader, and
                # then the pid we track would not be the console command.
                [SETSID, "--ctty", "--", *target.argv],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=_child_environment(term_type),
                close_fds=True,
            )
        except OSError as exc:
            raise ConsoleUnavailable(
                f"vm console {target}: cannot run {target.argv[0]}: {exc.strerror or exc}"
            ) from None
        except subprocess.SubprocessError as exc:
            raise ConsoleUnavailable(f"vm console {target}: {exc}") from None
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return PtyConsoleConnection(target, process, master)
