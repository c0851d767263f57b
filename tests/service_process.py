"""A certgate command that serves until stopped (``serve``, ``web``) as a child process.

Its stderr is collected line by line; ``start`` returns once a line matches ``ready``
(the command prints where it listens), so tests wait for the event, not for a time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading


class ServiceProcess:
    def __init__(self, args: list[str], env: dict[str, str], ready: str) -> None:
        self.args = args
        self.env = env
        self.ready = re.compile(ready)
        self.log: list[str] = []
        self.match: re.Match[str] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self, timeout: float = 30.0) -> re.Match[str]:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "certgate", *self.args], env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        seen = threading.Event()
        stderr = self.proc.stderr
        assert stderr is not None

        def drain() -> None:
            for raw in stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock:
                    self.log.append(line)
                found = self.ready.search(line)
                if found and self.match is None:
                    self.match = found
                    seen.set()

        threading.Thread(target=drain, daemon=True).start()
        if not seen.wait(timeout) or self.match is None:
            self.stop()
            raise RuntimeError(f"certgate {' '.join(self.args)} did not start:\n"
                               + "\n".join(self.log))
        return self.match

    def lines(self) -> list[str]:
        with self._lock:
            return list(self.log)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
