"""What a user sees when the gateway refuses, and what the audit log says about it.

Every refusal is visible to the user (a message and a non-zero exit status) and recorded
with its reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from gateway_testing import Gateway, RecordingConsole, details, finish

from certgate.audit import sessions as session_log
from certgate.audit.chain import ChainEntry

pytestmark = pytest.mark.slow


@pytest.fixture
def recording_console(gateway: Gateway, short_tmp: Path) -> Iterator[RecordingConsole]:
    console = RecordingConsole(short_tmp / "console.sock")
    try:
        yield console
    finally:
        console.close()


def denial_for(gateway: Gateway, user: str, after: int) -> dict[str, object]:
    entry = gateway.wait_for_audit("access.decide", after=after, match=lambda e: e.user == user)
    assert entry.outcome == "deny"
    return details(entry)


def test_an_unknown_key_is_refused_at_authentication(gateway: Gateway) -> None:
    stranger = gateway.workdir / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(stranger, "vm01"))

    assert status == 255
    assert "Permission denied (publickey)" in output
    refusal = gateway.wait_for_audit("auth.login", after=head)
    assert (refusal.outcome, refusal.user, refusal.vm) == ("deny", None, "vm01")
    assert "no identity certificate is issued for key" in details(refusal)["reason"]


def test_a_revoked_identity_is_refused_at_authentication(gateway: Gateway) -> None:
    henry = gateway.add_user("henry", "role=operator")
    code, output = gateway.cli("revoke", henry.identity_serial, "--reason", "keyCompromise")
    assert code == 0, output
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(henry, "vm01"))

    assert status == 255
    assert "Permission denied (publickey)" in output
    refusal = gateway.wait_for_audit("auth.login", after=head)
    assert refusal.outcome == "deny"
    assert details(refusal)["reason"] == f"identity certificate {henry.identity_serial} is revoked"


def test_an_expired_attribute_certificate_grants_nothing(gateway: Gateway) -> None:
    ivy = gateway.add_user("ivy", "role=operator", valid="2s")
    time.sleep(3)
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(ivy, "vm01"))

    assert status == 1
    assert "access to vm01 denied" in output
    denial = denial_for(gateway, "ivy", head)
    assert denial["attributes"] == {} or not any(denial["attributes"].values())  # type: ignore[union-attr]
    assert denial["reasons"]


def test_an_attribute_certificate_targeted_at_another_vm_does_not_apply(
        gateway: Gateway) -> None:
    jack = gateway.add_user("jack", "role=operator", targets=("vm02",))
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(jack, "vm01"))

    assert status == 1
    assert "access to vm01 denied" in output
    denial = denial_for(gateway, "jack", head)
    rejected = denial["rejected_attribute_certificates"]
    assert isinstance(rejected, list) and rejected
    assert rejected[0].startswith(jack.ac_serials[0])


def test_a_source_outside_the_whitelist_is_denied_naming_the_whitelist(
        gateway: Gateway) -> None:
    kate = gateway.add_user("kate", "role=operator")
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(kate, "x-office"))

    assert status == 1
    assert "access to x-office denied" in output
    assert "10.0.0.0/8" in output
    denial = denial_for(gateway, "kate", head)
    assert any("10.0.0.0/8" in reason for reason in denial["reasons"]), denial  # type: ignore[attr-defined]


def test_outside_the_time_window_access_is_denied(gateway: Gateway) -> None:
    leo = gateway.add_user("leo", "role=operator")
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(leo, "x-night"))

    assert status == 1
    assert "access to x-night denied" in output
    denial = denial_for(gateway, "leo", head)
    assert any("time" in reason or "hours" in reason
               for reason in denial["reasons"]), denial  # type: ignore[attr-defined]


def test_a_view_only_users_keystrokes_never_reach_the_guest(
        gateway: Gateway, recording_console: RecordingConsole) -> None:
    gateway.add_vm("vm-rec", f"unix:{recording_console.path}")
    mia = gateway.add_user("mia", "role=viewer")
    ned = gateway.add_user("ned", "role=operator")
    head = gateway.audit_head()

    viewer = gateway.ssh(mia, "vm-rec")
    viewer.expect("connected to vm-rec \\(view-only\\)")
    viewer.expect("recording console ready")
    viewer.send("viewer-typed\r")
    operator = gateway.ssh(ned, "vm-rec")
    operator.expect("connected to vm-rec \\(interactive\\)")
    time.sleep(0.5)  # the viewer's keystrokes had every chance to arrive first
    operator.send("operator-typed\r")
    recording_console.wait_for(b"operator-typed\r")

    assert b"viewer-typed" not in recording_console.snapshot()
    for client in (viewer, operator):
        client.send("\x1d")
        assert finish(client)[1] == 0
    starts = {e.user: details(e) for e in gateway.audit(event_type="session.start", after=head)}
    assert starts["mia"]["privileges"] == ["console.view"]
    ends = {e.user: details(e) for e in wait_for_ends(gateway, head, {"mia", "ned"})}
    assert ends["mia"]["bytes_in"] == 0
    assert ends["ned"]["bytes_in"] == len(b"operator-typed\r")


def wait_for_ends(gateway: Gateway, head: int, users: set[str]) -> list[ChainEntry]:
    deadline = time.monotonic() + 10
    while True:
        ends = [e for e in gateway.audit(event_type="session.end", after=head) if e.user in users]
        if {e.user for e in ends} == users or time.monotonic() > deadline:
            return ends
        time.sleep(0.1)


def test_a_console_that_is_down_gets_a_one_line_message(
        gateway: Gateway, short_tmp: Path) -> None:
    gateway.add_vm("vm-down", f"unix:{short_tmp / 'missing.sock'}")
    olga = gateway.add_user("olga", "role=operator")
    head = gateway.audit_head()

    output, status = finish(gateway.ssh(olga, "vm-down"))

    assert status == 1
    lines = [line for line in output.splitlines() if "vm-down" in line and "certgate" in line]
    assert len(lines) == 1, output
    # the user hears only that the console is unavailable; the why is for the audit log
    assert lines[0].endswith("vm-down: console unavailable"), lines[0]
    assert "missing.sock" not in output
    end = gateway.wait_for_audit("session.end", after=head)
    assert details(end)["reason"].startswith("console unavailable:")
    assert "no such socket (is the VM running?)" in details(end)["reason"]


def test_a_client_that_vanishes_mid_session_ends_its_session(gateway: Gateway) -> None:
    paul = gateway.add_user("paul", "role=operator")
    head = gateway.audit_head()

    client = gateway.ssh(paul, "vm01")
    client.expect("TTY True")
    client.sendline("still here")
    client.expect("GOT still here")
    os.kill(client.pid, signal.SIGKILL)
    client.expect(pexpect.EOF)

    end = gateway.wait_for_audit("session.end", after=head)
    assert end.user == "paul"
    assert details(end)["bytes_in"] == len(b"still here\n")
    assert details(end)["bytes_out"] > 0
    row = session_log.find_session(gateway.inst.database, end.session_id or "")
    assert row.status == session_log.ENDED
    assert row.end_reason == details(end)["reason"]
