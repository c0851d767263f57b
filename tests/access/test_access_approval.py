"""Approving attribute certificates: every rejection reason, with a fake clock, no database."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from access_pki import START, AccessPki, make_access_pki, revoked

from ca.attribute_cert import AttributeCertificateIssuer
from ca.attributes import AttributeSet
from certgate.access import (
    FakeClock,
    RejectionReason,
    VerifiedACs,
    approve_attribute_certificates,
)
from certgate.access import approval as approval_module
from certgate.access.model import Approval
from certgate.store.repositories import IssuedCertificate


@pytest.fixture(scope="module")
def pki() -> AccessPki:
    return make_access_pki()


def approve(pki: AccessPki, rows: list[IssuedCertificate], clock: FakeClock, *,
            vm: str | None = "vm01", holder: IssuedCertificate | None = None,
            cache: VerifiedACs | None = None) -> Approval:
    return approve_attribute_certificates(
        holder or pki.identity, pki.identity_cert, rows, anchors=pki.anchors, vm=vm,
        at=clock.now(), cache=cache)


def only_rejection(approval: Approval) -> tuple[RejectionReason, str]:
    assert approval.approved == ()
    assert len(approval.rejected) == 1
    return approval.rejected[0].reason, approval.rejected[0].message


def test_a_good_ac_is_approved_until_its_not_after(pki: AccessPki) -> None:
    ac = pki.ac()
    approval = approve(pki, [ac], FakeClock(START))
    assert approval.approved == (ac.serial,)
    assert approval.attributes.roles == ("operator",)
    assert approval.rejected == ()
    assert approval.valid_until == ac.not_after


def test_a_revoked_ac_says_it_was_revoked_and_why(pki: AccessPki) -> None:
    ac = revoked(pki.ac(), "keyCompromise")
    reason, message = only_rejection(approve(pki, [ac], FakeClock(START)))
    assert reason is RejectionReason.REVOKED
    assert message == f"AC {ac.serial} was revoked (keyCompromise)"


def test_an_ac_of_a_revoked_identity_names_the_identity(pki: AccessPki) -> None:
    ac = pki.ac()
    holder = revoked(pki.identity, "affiliationChanged")
    reason, message = only_rejection(approve(pki, [ac], FakeClock(START), holder=holder))
    assert reason is RejectionReason.HOLDER_REVOKED
    assert f"identity certificate {pki.identity.serial} was revoked (affiliationChanged)" \
        in message


def test_an_ac_expires_when_the_clock_passes_its_not_after(pki: AccessPki) -> None:
    ac = pki.ac(not_after=START + timedelta(minutes=5))
    clock = FakeClock(START)
    assert approve(pki, [ac], clock).approved == (ac.serial,)
    clock.advance(timedelta(minutes=5))
    reason, message = only_rejection(approve(pki, [ac], clock))
    assert reason is RejectionReason.EXPIRED
    assert message == f"AC {ac.serial} expired at {ac.not_after:%Y-%m-%dT%H:%M:%SZ}"


def test_an_ac_not_yet_valid_is_set_aside_and_its_start_is_the_next_boundary(
    pki: AccessPki,
) -> None:
    ac = pki.ac(not_before=START + timedelta(hours=1))
    approval = approve(pki, [ac], FakeClock(START))
    reason, message = only_rejection(approval)
    assert reason is RejectionReason.NOT_YET_VALID
    assert "is not valid before" in message
    assert approval.valid_until == ac.not_before


def test_an_ac_limited_to_other_vms_says_which(pki: AccessPki) -> None:
    ac = pki.ac(targets=("vm02", "vm03"))
    reason, message = only_rejection(approve(pki, [ac], FakeClock(START), vm="vm01"))
    assert reason is RejectionReason.WRONG_VM
    assert message == f"AC {ac.serial} is limited to vm02, vm03, not vm01"
    assert approve(pki, [ac], FakeClock(START), vm="vm02").approved == (ac.serial,)
    assert approve(pki, [ac], FakeClock(START), vm=None).approved == (ac.serial,)


def test_an_ac_signed_by_another_authority_is_invalid(pki: AccessPki) -> None:
    stranger = make_access_pki(aa_name="stranger AA")
    ac = pki.ac(issuer=stranger.issuer)
    reason, message = only_rejection(approve(pki, [ac], FakeClock(START)))
    assert reason is RejectionReason.INVALID
    assert "is issued by O=Example,CN=stranger AA" in message
    assert "not by the attribute authority" in message


def test_an_ac_with_a_forged_signature_is_invalid(pki: AccessPki) -> None:
    impostor = make_access_pki()  # same AA name, different key
    ac = pki.ac(issuer=impostor.issuer)
    reason, message = only_rejection(approve(pki, [ac], FakeClock(START)))
    assert reason is RejectionReason.INVALID
    assert "signature" in message


def test_an_ac_for_another_identity_is_invalid(pki: AccessPki) -> None:
    other = make_access_pki()
    ac = pki.ac(holder=other.identity_cert)
    reason, message = only_rejection(approve(pki, [ac], FakeClock(START)))
    assert reason is RejectionReason.INVALID
    assert "belongs to certificate" in message


def test_an_ac_targeted_at_another_gateway_is_invalid(pki: AccessPki) -> None:
    ac = pki.ac(issuer=AttributeCertificateIssuer(pki.anchors.aa, pki.aa_key,
                                                  gateway_name="gw.elsewhere"))
    reason, message = only_rejection(approve(pki, [ac], FakeClock(START)))
    assert reason is RejectionReason.INVALID
    assert message.endswith("is targeted at gw.elsewhere, not at gateway gw.test")


def test_unreadable_der_is_invalid_not_an_error(pki: AccessPki) -> None:
    from dataclasses import replace

    ac = replace(pki.ac(), der=b"\x30\x03\x02\x01\x01")
    reason, _ = only_rejection(approve(pki, [ac], FakeClock(START)))
    assert reason is RejectionReason.INVALID


def test_approved_attributes_merge_and_rejections_are_all_listed(pki: AccessPki) -> None:
    good = pki.ac(attributes=AttributeSet(roles=("operator",), groups=("sre",)))
    viewer = pki.ac(attributes=AttributeSet(roles=("viewer",)))
    gone = revoked(pki.ac(), "superseded")
    elsewhere = pki.ac(targets=("vm09",))
    approval = approve(pki, [good, viewer, gone, elsewhere], FakeClock(START))
    assert set(approval.approved) == {good.serial, viewer.serial}
    assert approval.attributes.roles == ("operator", "viewer")
    assert approval.attributes.groups == ("sre",)
    assert {r.reason for r in approval.rejected} == {RejectionReason.REVOKED,
                                                     RejectionReason.WRONG_VM}


def test_a_validated_ac_is_cached_until_it_expires_or_is_revoked(
    pki: AccessPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    ac = pki.ac(not_after=START + timedelta(hours=1))
    cache = VerifiedACs()
    clock = FakeClock(START)
    calls: list[str] = []
    real = approval_module.verify_attribute_certificate

    def counting(*args: object, **kwargs: object) -> AttributeSet:
        calls.append("verify")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(approval_module, "verify_attribute_certificate", counting)
    for _ in range(3):
        assert approve(pki, [ac], clock, cache=cache).approved == (ac.serial,)
    assert calls == ["verify"]
    assert len(cache) == 1
    only_rejection(approve(pki, [revoked(ac, "keyCompromise")], clock, cache=cache))
    assert len(cache) == 0
    assert approve(pki, [ac], clock, cache=cache).approved == (ac.serial,)
    assert calls == ["verify", "verify"]
    clock.advance(timedelta(hours=1))
    reason, _ = only_rejection(approve(pki, [ac], clock, cache=cache))
    assert reason is RejectionReason.EXPIRED
