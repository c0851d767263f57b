"""A throwaway OpenSSH ``sshd`` on 127.0.0.1 for tests: start it, wait for it, kill it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


@contextlib.contextmanager
def running_sshd(config: Path, port: int, *, timeout: float = 5.0) -> Iterator[None]:
    """Run ``sshd -D -e -f CONFIG`` until the block ends; fail with its stderr if it won't."""
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"sshd did not start: {err}")
            time.sleep(0.02)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
