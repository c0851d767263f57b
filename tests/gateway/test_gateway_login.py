"""Logging in through the gateway with the stock OpenSSH client.

The VM consoles here are ``exec:`` consoles running ``tests/consoles/pty_standin.py``, which
stands in for ``xl console DOMAIN`` (Xen cannot run on this machine): it reports whether it
got a terminal, the window size, and echoes what it reads.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_testing import (
    STANDIN,
    Gateway,
    default_policy,
    details,
    finish,
    start_gateway,
    stop_gateway,
)

pytestmark = pytest.mark.slow


def test_a_certified_key_reaches_an_allowed_vm_through_a_real_pty(gateway: Gateway) -> None:
    alice = gateway.add_user("alice", "role=operator")
    head = gateway.audit_head()

    client = gateway.ssh(alice, "vm01", dimensions=(24, 80))
    client.expect("connected to vm01 \\(interactive\\); Ctrl-] leaves")
    client.expect("TTY True CTTY True")
    client.expect("SIZE 80x24")
    client.expect("SECRET None")  # the CA passphrase never leaks into a console's environment
    client.sendline("hello console")
    client.expect("GOT hello console")

    client.setwinsize(30, 100)
    client.expect("SIZE 100x30")

    client.send("\x1d")
    _, status = finish(client)
    assert status == 0

    login = gateway.wait_for_audit("auth.login", after=head,
                                   match=lambda e: e.user == "alice")
    assert login.outcome == "allow"
    decision = gateway.wait_for_audit("access.decide", after=head,
                                      match=lambda e: e.user == "alice")
    assert decision.outcome == "allow" and decision.vm == "vm01"
    assert details(decision)["mode"] == "interactive"
    end = gateway.wait_for_audit("session.end", after=head, match=lambda e: e.user == "alice")
    assert details(end)["reason"] == "user detached"
    assert details(end)["bytes_in"] == len(b"hello console\n")


def test_whoami_prints_the_identity_and_the_approved_attributes(gateway: Gateway) -> None:
    carol = gateway.add_user("carol", "role=operator", "group=sre")
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(carol, "whoami"))

    assert status == 0
    assert re.search(r"user\s+carol", output)
    assert re.search(rf"identity\s+{carol.identity_serial}", output)
    assert re.search(r"credential\s+key SHA256:", output)
    assert "role=operator" in output and "group=sre" in output, output
    assert carol.ac_serials[0] in output
    login = gateway.wait_for_audit("auth.login", after=head)
    assert (login.outcome, login.user, login.vm) == ("allow", "carol", "whoami")


def test_an_unknown_target_lists_the_vms_the_user_may_reach_with_privileges(
        gateway: Gateway) -> None:
    dave = gateway.add_user("dave", "role=viewer")

    output, status = finish(gateway.ssh(dave, "no-such-vm"))

    assert status == 0
    assert "no VM named 'no-such-vm'" in output
    assert re.search(r"vm01\s+console\.view", output), output
    assert re.search(r"vm02\s+console\.view", output), output
    assert "console.interact" not in output
    assert "x-office" not in output  # only reachable from 10.0.0.0/8


def test_the_host_key_is_verified_through_the_cert_authority_line(
        gateway: Gateway, tmp_path: Path) -> None:
    erin = gateway.add_user("erin", "role=operator")
    line = gateway.known_hosts.read_text()
    assert line.startswith("@cert-authority ") and f"[127.0.0.1]:{gateway.port}" in line

    trusted, status = finish(gateway.ssh(erin, "whoami"))
    assert status == 0 and "user        erin" in trusted

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    refused, status = finish(gateway.ssh(erin, "whoami", known_hosts=empty))
    assert status == 255
    assert "Host key verification failed" in refused
    assert "erin" not in refused


def test_an_openssh_user_certificate_logs_in_until_its_serial_is_revoked(
        gateway: Gateway) -> None:
    gateway.add_user("frank", "role=operator")
    other = gateway.workdir / "frank_other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    cert = Path(f"{other}-cert.pub")
    code, output = gateway.cli("ssh-cert", "frank", "--pubkey", f"{other}.pub",
                               "--out", str(cert), "--valid", "1h")
    assert code == 0, output
    match = re.search(r"OpenSSH certificate ([0-9a-f]+) for frank", output)
    assert match, output
    serial = match.group(1)

    shown, status = finish(gateway.ssh(other, "whoami", "-o", f"CertificateFile={cert}"))
    assert status == 0
    assert re.search(r"user\s+frank", shown)
    assert re.search(r"credential\s+openssh-cert SHA256:", shown)

    code, output = gateway.cli("revoke", serial)
    assert code == 0, output
    head = gateway.audit_head()
    refused, status = finish(gateway.ssh(other, "whoami", "-o", f"CertificateFile={cert}"))
    assert status == 255
    assert "Permission denied" in refused
    denial = gateway.wait_for_audit(
        "auth.login", after=head, match=lambda e: e.outcome == "deny"
        and f"OpenSSH certificate {serial} was revoked" in (details(e)["reason"] or ""))
    assert details(denial)["credential"] == "openssh-cert"


@pytest.mark.postgres
def test_login_and_decision_on_each_database(database_url: str, tmp_path: Path) -> None:
    """The same login and policy decision with the installation on SQLite and PostgreSQL."""
    gw = start_gateway(tmp_path, None if database_url.startswith("sqlite") else database_url)
    try:
        gw.add_vm("vm01", f"exec:{sys.executable} {STANDIN}")
        gw.apply_policy(default_policy())
        grace = gw.add_user("grace", "role=operator")
        head = gw.audit_head()

        client = gw.ssh(grace, "vm01")
        client.expect("connected to vm01 \\(interactive\\)")
        client.expect("TTY True")
        client.send("\x1d")
        _, status = finish(client)

        assert status == 0
        decision = gw.wait_for_audit("access.decide", after=head)
        assert (decision.outcome, decision.user, decision.vm) == ("allow", "grace", "vm01")
        assert details(decision)["matched_rules"] == ["operators"]
        assert gw.wait_for_audit("session.end", after=head).user == "grace"
    finally:
        stop_gateway(gw)
