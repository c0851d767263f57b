"""Fixtures for the audit tests: a verifier bound to the installation, and a filled chain."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from audit_samples import sample_event
from cryptography import x509

from certgate.audit.checkpoints import CheckpointSigner, CheckpointVerifier, load_signer
from certgate.audit.verification import VerificationReport, verify_chain
from certgate.installation import Installation


@pytest.fixture
def verifier(installation: Installation) -> CheckpointVerifier:
    audit_cert = x509.load_pem_x509_certificate(installation.home.audit_cert.read_bytes())
    return CheckpointVerifier(audit_cert, installation.root_certificate)


@pytest.fixture
def signer(installation: Installation) -> CheckpointSigner:
    return load_signer(installation)


@pytest.fixture
def verify(
    installation: Installation, verifier: CheckpointVerifier
) -> Callable[[], VerificationReport]:
    """Verification in small batches, so batch boundaries are crossed too."""

    def run() -> VerificationReport:
        return verify_chain(installation.database, verifier, batch=7)

    return run


@pytest.fixture
def filled(installation: Installation) -> int:
    """Twenty events after ca.init; returns the head seq (21)."""
    entries = installation.audit.record_many([sample_event(n) for n in range(20)])
    return entries[-1].seq
