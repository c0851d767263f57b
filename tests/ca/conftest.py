"""Session-scoped PKI fixtures for the ``ca`` tests (keys are generated once)."""

import pytest
from ca_pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki("ed25519")


@pytest.fixture(scope="session", params=["ed25519", "ecdsa-p256"])
def any_pki(request: pytest.FixtureRequest) -> Pki:
    return make_pki(request.param)


@pytest.fixture(scope="session")
def other_pki() -> Pki:
    return make_pki("ed25519")
