"""A gateway killed with SIGKILL mid-session: the next start reaps the session as abnormal and
the audit chain is still intact."""

from __future__ import annotations

import pexpect
import pytest
from gateway_testing import Gateway, details

from certgate.audit import sessions as session_log

pytestmark = pytest.mark.slow


def test_after_kill_9_and_a_restart_the_session_is_ended_abnormally_and_the_chain_verifies(
        own_gateway: Gateway) -> None:
    wendy = own_gateway.add_user("wendy", "role=operator")
    head = own_gateway.audit_head()
    client = own_gateway.ssh(wendy, "vm01")
    client.expect("TTY True")
    start = own_gateway.wait_for_audit("session.start", after=head)
    live = session_log.find_session(own_gateway.inst.database, start.session_id or "")
    assert live.status == session_log.LIVE

    own_gateway.process.kill9()
    client.expect(pexpect.EOF)
    own_gateway.process.start()

    reaped = session_log.find_session(own_gateway.inst.database, live.id)
    assert reaped.status == session_log.ABNORMAL
    assert reaped.end_reason == "gateway restarted while the session was live"
    abnormal = own_gateway.wait_for_audit("session.abnormal-end", after=head)
    assert abnormal.session_id == live.id and details(abnormal)["reason"] == reaped.end_reason
    code, output = own_gateway.cli("audit", "verify")
    assert code == 0, output
    assert "audit chain intact" in output
