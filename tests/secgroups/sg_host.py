"""Helpers for security-group tests: ``certgate`` run inside the host namespace, and the
check that this machine can run them (in CI it must)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sg_topology import netfilter_unavailable


@dataclass
class HostCertgate:
    """``certgate`` run inside the routing host's namespace, with one home."""

    home: Path
    netns: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CERTGATE_HOME": str(self.home)}
        env.pop("CERTGATE_DATABASE_URL", None)
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, sys.executable, "-m", "certgate", *args],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"certgate {' '.join(args)} failed:\n{done.stderr}"
        assert "Traceback" not in done.stderr
        return done.stdout

    def refused(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode != 0, f"certgate {' '.join(args)} unexpectedly succeeded"
        assert "Traceback" not in done.stderr + done.stdout
        lines = done.stderr.splitlines()
        assert len(lines) == 1, f"expected one line on stderr:\n{done.stderr}"
        return lines[0].removeprefix("certgate: error: ")


def require_netfilter() -> None:
    reason = netfilter_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"security-group packet tests must run in CI: {reason}")
    pytest.skip(reason)


def new_home(tmp: Path, netns: str) -> HostCertgate:
    certgate = HostCertgate(tmp / "home", netns)
    certgate.ok("init", "--gateway-name", "gw.test", "--no-passphrase")
    return certgate
