"""A VM whose console is a real OpenSSH sshd (the ``ssh://`` backend).

The gateway logs in upstream with its own key (``certgate ca export --upstream-key`` in the
guest's authorized_keys) and checks the guest's host key against its upstream_known_hosts.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_testing import Gateway, details, finish, free_port
from sshd import SSHD, running_sshd

pytestmark = pytest.mark.slow



@pytest.fixture
def guest_sshd(gateway: Gateway, tmp_path: Path) -> Iterator[int]:
    """sshd on 127.0.0.1 that trusts the gateway's upstream key; yields its port."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
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
    with running_sshd(config, port):
        yield port


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
