"""``user disable``, ``user enable`` and ``user rm`` with stock OpenSSH clients: live sessions
end at once (the store's change counter moves; the gateway re-decides), logins are refused,
and each step is audited."""

from __future__ import annotations

import pexpect
import pytest
from gateway_testing import Gateway, User, details, finish

pytestmark = pytest.mark.slow

ENDS_WITHIN = 6.0


def open_session(gateway: Gateway, user: User) -> pexpect.spawn:
    client = gateway.ssh(user, "vm01")
    client.expect("connected to vm01 \\(interactive\\)")
    client.expect("TTY True")
    return client


def ended_with(client: pexpect.spawn) -> str:
    client.expect("session ended: (.*)\r\n", timeout=ENDS_WITHIN)
    told: str = client.match.group(1).decode()
    _, status = finish(client)
    assert status == 1
    return told


def test_disable_ends_the_live_session_and_enable_lets_the_user_back(
        gateway: Gateway) -> None:
    uli = gateway.add_user("uli", "role=operator")
    client = open_session(gateway, uli)
    head = gateway.audit_head()

    code, output = gateway.cli("user", "disable", "uli")
    assert code == 0, output

    assert ended_with(client) == "user uli is disabled"
    revoked = gateway.wait_for_audit("session.revoked", after=head)
    assert revoked.user == "uli" and details(revoked)["reason"] == "user uli is disabled"
    assert gateway.wait_for_audit("user.disable", after=head).user == "uli"
    refused, status = finish(gateway.ssh(uli, "vm01"))
    assert status == 255 and "Permission denied" in refused

    code, output = gateway.cli("user", "enable", "uli")
    assert code == 0, output
    again = open_session(gateway, uli)
    again.sendcontrol("]")
    finish(again)


def test_rm_revokes_everything_and_ends_the_live_session(gateway: Gateway) -> None:
    vera = gateway.add_user("vera", "role=operator")
    client = open_session(gateway, vera)
    head = gateway.audit_head()

    code, output = gateway.cli("user", "rm", "vera", "--reason", "affiliationChanged")
    assert code == 0, output
    assert f"revoked identity  {vera.identity_serial}" in output
    assert f"revoked attribute {vera.ac_serials[0]}" in output

    told = ended_with(client)
    assert told == (f"identity certificate {vera.identity_serial} was revoked "
                    "(affiliationChanged)")
    removal = gateway.wait_for_audit("user.rm", after=head)
    assert {c["serial"] for c in details(removal)["revoked"]} == {
        vera.identity_serial, vera.ac_serials[0]}
    refused, status = finish(gateway.ssh(vera, "vm01"))
    assert status == 255 and "Permission denied" in refused
    code, output = gateway.cli("user", "show", "vera")
    assert code == 0 and "state  removed" in output
