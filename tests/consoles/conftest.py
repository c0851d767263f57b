"""Fixtures for console tests: short socket directories, a throwaway sshd, the QEMU guest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from console_testing import free_port
from sshd import SSHD, running_sshd

from certgate.demo.guest import GuestImage, GuestUnavailable, build_test_guest, default_cache_dir


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for Unix sockets (sun_path is limited to 108 bytes)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cgc-", dir="/tmp") as path:
        yield Path(path)


# --- OpenSSH sshd on 127.0.0.1 -------------------------------------------------------


@dataclass
class Sshd:
    port: int
    client_key: Path
    known_hosts: Path
    host_ca_pub: Path
    user: str


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    host_key, client_key, host_ca = tmp_path / "host", tmp_path / "client", tmp_path / "host_ca"
    for key in (host_key, client_key, host_ca):
        subprocess.run([*keygen, "-f", str(key)], check=True)
    # A host certificate too, so the trusted-host-CA path can be tested.
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-s",
            str(host_ca),
            "-I",
            "guest",
            "-h",
            "-n",
            "127.0.0.1",
            str(host_key) + ".pub",
        ],
        check=True,
    )
    authorized = tmp_path / "authorized_keys"
    authorized.write_text((tmp_path / "client.pub").read_text())
    port = free_port()
    known_hosts = tmp_path / "known_hosts"
    host_pub = (tmp_path / "host.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"HostCertificate {host_key}-cert.pub\n"
        f"AuthorizedKeysFile {authorized}\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPidFile none\nLogLevel ERROR\n"
    )
    import getpass

    with running_sshd(config, port):
        yield Sshd(port, client_key, known_hosts, tmp_path / "host_ca.pub", getpass.getuser())


# --- the QEMU test guest ---------------------------------------------------------------


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    try:
        return build_test_guest(default_cache_dir())
    except GuestUnavailable as exc:
        pytest.skip(f"test guest unavailable: {exc}")
