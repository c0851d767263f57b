"""Two ``certgate serve`` replicas on one PostgreSQL: ``certgate revoke`` (a separate process)
ends a session held on the other replica, through LISTEN/NOTIFY, with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_testing import (
    STANDIN,
    Gateway,
    GatewayProcess,
    default_policy,
    finish,
    free_port,
    start_gateway,
    stop_gateway,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


class ReplicaProcess(GatewayProcess):
    """A second ``certgate serve`` on the same installation, on its own port."""

    def __init__(self, home: Path, env: dict[str, str], port: int, gateway_id: str) -> None:
        super().__init__(home, env)
        self.port = port
        self.gateway_id = gateway_id

    def start(self, timeout: float = 30.0) -> None:
        import threading

        self.log = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "certgate", "serve", "--gateway-id", self.gateway_id,
             "--listen", f"127.0.0.1:{self.port}"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        ready = threading.Event()
        assert self.proc.stderr is not None
        stderr = self.proc.stderr

        def drain() -> None:
            for raw in stderr:
                line = raw.decode(errors="replace").rstrip()
                self.log.append(line)
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("replica did not start:\n" + "\n".join(self.log))


@pytest.fixture
def replicas(tmp_path: Path, postgres: object) -> Iterator[tuple[Gateway, ReplicaProcess]]:
    url = postgres.create_database()  # type: ignore[attr-defined]
    gateway = start_gateway(tmp_path, database_url=url)
    gateway.add_vm("vm01", f"exec:{sys.executable} {STANDIN}")
    gateway.apply_policy(default_policy())
    replica = ReplicaProcess(gateway.home.root, gateway.process.env, free_port(), "gw-b")
    replica.start()
    try:
        yield gateway, replica
    finally:
        replica.stop()
        stop_gateway(gateway)


def test_revoking_on_the_command_line_ends_a_session_on_the_other_replica(
    replicas: tuple[Gateway, ReplicaProcess], tmp_path: Path,
) -> None:
    gateway, replica = replicas
    wren = gateway.add_user("wren", "role=operator")
    known_hosts = tmp_path / "known_hosts_b"
    known_hosts.write_text(gateway.known_hosts.read_text().replace(
        f":{gateway.port}", f":{replica.port}"))
    args = gateway.ssh_args(wren, "vm01", known_hosts=known_hosts)
    args[args.index("-p") + 1] = str(replica.port)
    import pexpect

    client = pexpect.spawn("ssh", args, timeout=15, dimensions=(24, 80))
    try:
        client.expect("connected to vm01 \\(interactive\\)")
        client.expect("TTY True")

        revoke = subprocess.run(
            [sys.executable, "-m", "certgate", "revoke", wren.ac_serials[0], "--reason",
             "keyCompromise"], env={**os.environ, **gateway.process.env},
            capture_output=True, text=True, timeout=60)
        committed = time.monotonic()
        assert revoke.returncode == 0, revoke.stderr

        client.expect("session ended: (.*)\r\n", timeout=10)
        latency = time.monotonic() - committed
        told = client.match.group(1).decode()
        assert told == f"AC {wren.ac_serials[0]} was revoked (keyCompromise)"
        _, status = finish(client)
        assert status == 1
        # Reported, not asserted: the machine is shared, so a timing bound would be flaky.
        # bench/live_sessions.py measures revocation latency; the design target is <= 1 s.
        print(f"replica B ended the session {latency * 1000:.0f} ms after the revoke exited")
        revoked = gateway.wait_for_audit(
            "session.revoked", after=0, match=lambda e: e.user == "wren")
        assert revoked.actor.endswith("gw-b")
    finally:
        client.close(force=True)
