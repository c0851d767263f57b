"""Revocation reaches live sessions: the gateway re-checks every session each second.

Revoking the identity certificate, revoking the attribute certificate that granted access, or
applying a policy that no longer grants it ends an open session within seconds; the user is
told why and the audit log has a ``session.revoked`` event.
"""

from __future__ import annotations

import pexpect
import pytest
from gateway_testing import Gateway, User, default_policy, details, finish

pytestmark = pytest.mark.slow

ENDS_WITHIN = 6.0


def open_session(gateway: Gateway, user: User) -> tuple[pexpect.spawn, int]:
    head = gateway.audit_head()
    client = gateway.ssh(user, "vm01")
    client.expect("connected to vm01 \\(interactive\\)")
    client.expect("TTY True")
    gateway.wait_for_audit("session.start", after=head)
    return client, head


def assert_ended_by_revocation(gateway: Gateway, client: pexpect.spawn, user: User, head: int,
                               reason_text: str) -> None:
    client.expect("session ended: (.*)\r\n", timeout=ENDS_WITHIN)
    told = client.match.group(1).decode()
    assert reason_text in told
    _, status = finish(client)
    assert status == 1
    revoked = gateway.wait_for_audit("session.revoked", after=head)
    assert revoked.user == user.name and reason_text in details(revoked)["reason"]
    end = gateway.wait_for_audit("session.end", after=head)
    assert end.session_id == revoked.session_id


def test_revoking_the_identity_ends_a_live_session(gateway: Gateway) -> None:
    quinn = gateway.add_user("quinn", "role=operator")
    client, head = open_session(gateway, quinn)

    code, output = gateway.cli("revoke", quinn.identity_serial)
    assert code == 0, output

    assert_ended_by_revocation(gateway, client, quinn, head,
                               f"identity certificate {quinn.identity_serial} was revoked "
                               "(unspecified)")


def test_revoking_the_attribute_certificate_ends_a_live_session(gateway: Gateway) -> None:
    rose = gateway.add_user("rose", "role=operator")
    client, head = open_session(gateway, rose)

    code, output = gateway.cli("revoke", rose.ac_serials[0], "--reason", "privilegeWithdrawn")
    assert code == 0, output

    assert_ended_by_revocation(gateway, client, rose, head,
                               f"AC {rose.ac_serials[0]} was revoked (privilegeWithdrawn)")


def test_applying_a_policy_that_removes_access_ends_a_live_session(gateway: Gateway) -> None:
    sam = gateway.add_user("sam", "role=operator")
    client, head = open_session(gateway, sam)
    try:
        gateway.apply_policy(default_policy(without=("operators",)))
        assert_ended_by_revocation(gateway, client, sam, head, "access withdrawn")
    finally:
        gateway.apply_policy(default_policy())
