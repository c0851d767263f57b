"""A VM whose console is a real OpenSSH sshd (the ``ssh://`` backend).

The gateway logs in upstream with its own key (``certgate ca export --upstream-key`` in the
guest's authorized_keys) and checks the guest's host key against its upstream_known_hosts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_testing import Gateway, details, finish, free_port

pytestmark = pytest.mark.slow

SSHD = Path("/usr/sbin/sshd")


@pytest.fixture
def guest_sshd(gateway: Gateway, tmp_path: Path) -> Iterator[int]:
    """sshd on 127.0.0.1 that trusts the gateway's upstream key; yields its port."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    os.makedirs("/run/sshd", exist_ok=True)
    host_key = tmp_path / "sshd_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                   check=True)
    code, upstream_line = gateway.cli("ca", "export", "--upstream-key")
    assert code == 0, upstream_line
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(upstream_line)
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nUsePAM no\nStrictModes no\n"
        f"PidFile {tmp_path / 'sshd.pid'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel ERROR\n"
    )
    kind, blob = Path(f"{host_key}.pub").read_text().split()[:2]
    with gateway.home.upstream_known_hosts.open("a") as known:
        known.write(f"[127.0.0.1]:{port} {kind} {blob}\n")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"sshd did not start: {err}")
            time.sleep(0.02)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_a_shell_on_the_guests_sshd_runs_commands_and_its_exit_status_passes_through(
        gateway: Gateway, guest_sshd: int) -> None:
    gateway.add_vm("vms", f"ssh://root@127.0.0.1:{guest_sshd}")
    tess = gateway.add_user("tess", "role=operator")
    head = gateway.audit_head()

    client = gateway.ssh(tess, "vms")
    client.expect("connected to vms \\(interactive\\)")
    client.sendline("echo result=$((6*7))")
    client.expect("result=42")
    client.sendline("exit 3")
    output, status = finish(client)

    assert status == 3, output
    end = gateway.wait_for_audit("session.end", after=head)
    assert end.user == "tess" and end.vm == "vms"
    assert "exited with status 3" in details(end)["reason"]
