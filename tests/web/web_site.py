"""The review site in process: Starlette's test client over a real installation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

sys.path.insert(0, str(Path(__file__).resolve().parent))

from review_samples import Person, add_person, setup_fleet
from starlette.testclient import TestClient

from certgate.installation import Installation
from certgate.web.app import CLIENT_CERT_KEY, create_app
from certgate.web.server import build_site


class ClientCertificate:
    """Puts a client certificate into the ASGI state, as the TLS protocol layer does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.der: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.der is not None:
            scope = {**scope, "state": {**scope.get("state", {}), CLIENT_CERT_KEY: self.der}}
        await self.app(scope, receive, send)


@dataclass
class Site:
    inst: Installation
    client: TestClient
    tls: ClientCertificate
    auditor: Person
    lab_auditor: Person
    operator: Person
    workdir: Path

    def as_person(self, person: Person | None) -> None:
        self.tls.der = person.certificate.public_bytes(Encoding.DER) if person else None


@pytest.fixture
def site(installation: Installation, tmp_path: Path) -> Iterator[Site]:
    setup_fleet(installation)
    workdir = tmp_path / "people"
    workdir.mkdir()
    auditor = add_person(installation, workdir, "audrey", "auditor")
    lab_auditor = add_person(installation, workdir, "lars", "lab-auditor")
    operator = add_person(installation, workdir, "otto", "operator")
    review = build_site(installation)
    tls = ClientCertificate(create_app(review, player=tmp_path))
    with TestClient(tls, base_url="https://localhost") as client:
        yield Site(installation, client, tls, auditor, lab_auditor, operator, workdir)
