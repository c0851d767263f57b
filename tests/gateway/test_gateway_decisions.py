"""Decisions through real SSH, fast: the gateway in-process with a fake clock.

What a user is told when an attribute certificate expires, is revoked or is limited to other
VMs, and how live sessions end, without sleeping for real time to pass.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncssh
import pytest
from gateway_inprocess import InProcessGateway, gateway_with_console
from gateway_testing import default_policy


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    with gateway_with_console(tmp_path_factory.mktemp("inproc"), ("vm01", "vm02")) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def real_time_at_start(harness: InProcessGateway) -> None:
    """Each test starts at the real time (certificates are issued at the real time)."""
    harness.clock.set(datetime.now(UTC))


def decision_details(harness: InProcessGateway, user: str, after: int) -> dict[str, object]:
    entries = [e for e in harness.audit("access.decide", after=after) if e.user == user]
    assert entries, f"no access.decide event for {user}"
    found: dict[str, object] = json.loads(entries[-1].details_json or "{}")
    return found


def test_an_expired_attribute_certificate_is_named_with_its_expiry(
    harness: InProcessGateway,
) -> None:
    ivy = harness.add_person("ivy", "role=operator", valid="1h")
    harness.advance(timedelta(hours=1, minutes=1))
    head = harness.audit_head()

    output, status = harness.login_output(ivy, "vm01")

    assert status == 1
    assert "access to vm01 denied" in output
    assert f"not counted: AC {ivy.ac_serials[0]} expired at " in output
    details = decision_details(harness, "ivy", head)
    assert details["attribute_certificates"] == []
    rejected = details["rejected_attribute_certificates"]
    assert isinstance(rejected, list)
    assert rejected[0].startswith(f"AC {ivy.ac_serials[0]} expired at ")


def test_an_attribute_certificate_limited_to_another_vm_says_so(
    harness: InProcessGateway,
) -> None:
    jack = harness.add_person("jack", "role=operator", targets=("vm02",))

    output, status = harness.login_output(jack, "vm01")

    assert status == 1
    assert f"not counted: AC {jack.ac_serials[0]} is limited to vm02" in output


def test_a_live_session_ends_when_its_attribute_certificate_expires(
    harness: InProcessGateway,
) -> None:
    kim = harness.add_person("kim", "role=operator", valid="2h")
    session = harness.session(kim, "vm01")
    harness.run(session.read_until(b"connected to vm01"))

    harness.advance(timedelta(hours=2))

    output, status = harness.run(session.finish())
    assert status == 1
    assert f"session ended: AC {kim.ac_serials[0]} expired at ".encode() in output


def test_revoking_the_attribute_certificate_ends_the_session_naming_it_and_the_reason(
    harness: InProcessGateway,
) -> None:
    lou = harness.add_person("lou", "role=operator")
    session = harness.session(lou, "vm01")
    harness.run(session.read_until(b"connected to vm01"))
    head = harness.audit_head()

    harness.inst.ca.revoke(lou.ac_serials[0], reason="keyCompromise")

    output, status = harness.run(session.finish())
    assert status == 1
    assert (f"session ended: AC {lou.ac_serials[0]} was revoked (keyCompromise)".encode()
            in output)
    ended = [e for e in harness.audit("session.revoked", after=head) if e.user == "lou"]
    assert len(ended) == 1
    assert "keyCompromise" in (ended[0].details_json or "")


def test_whoami_lists_attribute_certificates_that_do_not_count_and_why(
    harness: InProcessGateway,
) -> None:
    max_ = harness.add_person("max", "role=operator")
    stale = harness.grant("max", "role=viewer", valid="10m")
    harness.advance(timedelta(minutes=11))

    output, status = harness.login_output(max_, "whoami")

    assert status == 0
    assert "user        max" in output
    assert f"from ACs    {max_.ac_serials[0]}" in output
    assert f"rejected    AC {stale} expired at " in output


def test_the_listing_shows_only_what_may_be_reached_now(harness: InProcessGateway) -> None:
    nia = harness.add_person("nia", "role=operator", targets=("vm02",))

    output, status = harness.login_output(nia, "nowhere")

    assert status == 0
    assert "VMs nia may reach now:" in output
    assert "vm02" in output and "vm01 " not in output


def test_disabling_a_user_ends_their_session_and_refuses_logins_until_enabled(
    harness: InProcessGateway,
) -> None:
    olga = harness.add_person("olga", "role=operator")
    session = harness.session(olga, "vm01")
    harness.run(session.read_until(b"connected to vm01"))

    harness.inst.ca.disable_user("olga")

    output, status = harness.run(session.finish())
    assert status == 1
    assert b"session ended: user olga is disabled" in output
    with pytest.raises(asyncssh.PermissionDenied):
        harness.login_output(olga, "vm01")

    harness.inst.ca.enable_user("olga")
    again = harness.session(olga, "vm01")
    harness.run(again.read_until(b"connected to vm01"))
    again.conn.close()


def test_removing_a_user_ends_their_session_naming_the_revoked_identity(
    harness: InProcessGateway,
) -> None:
    pat = harness.add_person("pat", "role=operator")
    session = harness.session(pat, "vm01")
    harness.run(session.read_until(b"connected to vm01"))

    harness.inst.ca.remove_user("pat", reason="affiliationChanged")

    output, status = harness.run(session.finish())
    assert status == 1
    assert (f"session ended: identity certificate {pat.identity_serial} was revoked "
            f"(affiliationChanged)").encode() in output
    with pytest.raises(asyncssh.PermissionDenied):
        harness.login_output(pat, "vm01")


def test_the_change_feed_moves_only_when_the_store_changes(
    harness: InProcessGateway,
) -> None:
    feed = harness.gateway.feed
    harness.run(feed.check())
    seen = feed.counter
    harness.run(feed.check())
    assert feed.counter == seen

    harness.add_person("quin")

    harness.run(feed.check())
    assert feed.counter == seen + 1


def test_a_session_is_re_decided_at_its_boundary_without_a_store_change(
    harness: InProcessGateway, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rae = harness.add_person("rae", "role=operator", valid="3h")
    session = harness.session(rae, "vm01")
    harness.run(session.read_until(b"connected to vm01"))
    harness.run(harness.gateway.feed.check())  # the gateway has seen every change so far
    harness.run(harness.gateway.recheck(everything=True))
    calls: list[int] = []
    real = harness.gateway.access.redecide

    def counted(requests, at=None):  # type: ignore[no-untyped-def]
        calls.append(len(requests))
        return real(requests, at)

    monkeypatch.setattr(harness.gateway.access, "redecide", counted)
    harness.advance(timedelta(hours=1))
    harness.run(harness.gateway.recheck(everything=False))
    assert calls == []  # nobody's boundary was reached: nothing re-decided

    harness.advance(timedelta(hours=2))
    output, status = harness.run(session.finish())
    assert status == 1 and b"expired at" in output
    assert calls and calls[-1] >= 1


def test_a_revoked_identity_is_refused_at_login_saying_why(harness: InProcessGateway) -> None:
    sue = harness.add_person("sue", "role=operator")
    harness.inst.ca.revoke(sue.identity_serial, reason="keyCompromise")
    head = harness.audit_head()

    with pytest.raises(asyncssh.PermissionDenied):
        harness.login_output(sue, "vm01")

    refusals = [json.loads(e.details_json or "{}")["reason"]
                for e in harness.audit("auth.login", after=head) if e.outcome == "deny"]
    assert f"identity certificate {sue.identity_serial} was revoked (keyCompromise)" in refusals


LIMITED = default_policy() + """\
  - name: limited
    effect: allow
    vms: {names: ["vm02"]}
    require: {roles: [limited]}
    privileges: [console.view, console.interact]
    session: {max: 2h, idle: 30m}
"""


def test_session_limits_end_sessions_at_their_deadline_by_the_clock(
    harness: InProcessGateway,
) -> None:
    harness.apply_policy(LIMITED)
    try:
        tom = harness.add_person("tom", "role=limited", valid="8h")
        idle = harness.session(tom, "vm02")
        harness.run(idle.read_until(b"connected to vm02"))
        busy = harness.session(tom, "vm02")
        harness.run(busy.read_until(b"connected to vm02"))

        async def type_on_busy() -> None:
            busy.process.stdin.write(b"x")
            await busy.process.stdin.drain()
            now = harness.clock.now()
            async with asyncio.timeout(10):  # until the gateway has seen the keystroke
                while not any(live.last_input == now
                              for live in harness.gateway.live.values()):
                    await asyncio.sleep(0.01)

        for _ in range(5):  # 100 minutes, typing every 20 minutes on one session only
            harness.advance(timedelta(minutes=20))
            harness.run(type_on_busy())
        output, status = harness.run(idle.finish())
        assert status == 1 and b"session ended: idle for 0:30:00" in output

        harness.advance(timedelta(minutes=20))
        output, status = harness.run(busy.finish())
        assert status == 1 and b"session ended: maximum session length 2:00:00 reached" \
            in output
    finally:
        harness.apply_policy(default_policy())
