"""exec: consoles run in a pty.

``pty_standin.py`` stands in for ``xl console DOMAIN`` (and ``virsh console``): Xen cannot
run on this machine (``xl`` needs a hypervisor), so the test proves the properties that
command relies on -- a real controlling terminal, its size, SIGWINCH on resize, and the
whole process group going away when the gateway closes the console.
"""

import asyncio
import re
import sys
from pathlib import Path

import pytest
from console_testing import read_until, run

from certgate.consoles import ConsoleUnavailable, ExecConsole, open_console
from certgate.consoles.pty_backend import PtyConsoleConnection

STANDIN = ExecConsole((sys.executable, str(Path(__file__).parent / "pty_standin.py")))


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_command_runs_on_a_controlling_pty_of_the_requested_size(monkeypatch):
    monkeypatch.setenv("CERTGATE_CA_PASSPHRASE", "hunter2")

    async def body():
        console = await open_console(STANDIN, term_type="vt100", cols=100, rows=30)
        try:
            out = await read_until(console.read, b"CHILD")
            assert b"TTY True CTTY True" in out
            assert b"SIZE 100x30" in out
            assert b"TERM vt100 SECRET None" in out  # gateway secrets stay out of the child
            await console.write(b"hello\n")
            await read_until(console.read, b"GOT hello")
        finally:
            await console.close()

    run(body())


def test_resize_reaches_the_command_as_sigwinch():
    async def body():
        console = await open_console(STANDIN, cols=80, rows=24)
        try:
            await read_until(console.read, b"CHILD")
            await console.resize(132, 43)
            assert b"SIZE 132x43" in await read_until(console.read, b"SIZE 132x43")
        finally:
            await console.close()

    run(body())


def test_close_kills_the_whole_process_group_and_reaps_it():
    async def body():
        console = await open_console(STANDIN)
        assert isinstance(console, PtyConsoleConnection)
        out = await read_until(console.read, re.compile(rb"CHILD \d+\r?\n"))
        grandchild = int(out.split(b"CHILD ")[1].split()[0])
        await console.close()
        assert console.exit_status is not None
        return console.pid, grandchild

    pid, grandchild = run(body())
    assert _gone(pid)
    assert _gone(grandchild), "a SIGHUP-ignoring grandchild survived close()"


def _ignores_sighup(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & 1)
    return False


def test_child_exit_is_eof_with_the_exit_status():
    """EOF when the command exits, even while a process it left behind (ignoring SIGHUP)
    still holds the pty open: for a pty, the session leader's exit hangs nothing up.

    This was a race: the test passed when the grandchild died of the exit's SIGHUP before
    it got to ignore it, and hung when it was faster. It now waits for the grandchild to
    ignore SIGHUP, the case that used to hang."""

    async def body():
        console = await open_console(STANDIN)
        try:
            out = await read_until(console.read, re.compile(rb"CHILD \d+\r?\n"))
            grandchild = int(out.split(b"CHILD ")[1].split()[0])
            while not _ignores_sighup(grandchild):
                await asyncio.sleep(0.01)
            await console.write(b"exit\n")
            while await console.read():
                pass
            assert "exited with status 3" in console.end_reason
            assert await console.send_break() is False
        finally:
            await console.close()

    run(body())


def test_missing_command_is_one_clear_line():
    async def body():
        await open_console(ExecConsole(("/nonexistent/xl", "console", "vm01")))

    with pytest.raises(ConsoleUnavailable) as info:
        run(body())
    assert str(info.value).startswith("vm console exec:/nonexistent/xl console vm01: cannot run")
