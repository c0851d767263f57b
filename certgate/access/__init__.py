"""The access core: the one place that decides who may do what (see docs/access.md).

Identify a credential (plain key, OpenSSH certificate, X.509 over SSH), approve attribute
certificates (pure), decide against the policy (pure), explain. ``AccessService`` reads the
store once per decision and calls the pure parts; everything else (the SSH gateway, the CLI,
the live re-checks) asks it and re-implements none of it.
"""

from certgate.access.approval import (
    TrustAnchors,
    VerifiedACs,
    approve_attribute_certificates,
    judge_attribute_certificate,
    merge_attributes,
)
from certgate.access.clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from certgate.access.explain import explain, explanation_lines
from certgate.access.model import (
    EMPTY_POLICY,
    AccessRefused,
    Approval,
    Credential,
    Grant,
    Identity,
    Rejection,
    RejectionReason,
)
from certgate.access.service import AccessService, AttributeCheck, parse_source

__all__ = [
    "EMPTY_POLICY",
    "SYSTEM_CLOCK",
    "AccessRefused",
    "AccessService",
    "Approval",
    "AttributeCheck",
    "Clock",
    "Credential",
    "FakeClock",
    "Grant",
    "Identity",
    "Rejection",
    "RejectionReason",
    "SystemClock",
    "TrustAnchors",
    "VerifiedACs",
    "approve_attribute_certificates",
    "explain",
    "explanation_lines",
    "judge_attribute_certificate",
    "merge_attributes",
    "parse_source",
]
