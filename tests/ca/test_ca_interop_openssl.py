"""OpenSSL as an independent parser/verifier of identity certificates and CRLs."""

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ca_pki import Pki, make_pki
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.authority import build_identity_certificate
from ca.keys import generate_private_key
from ca.revocation import RevokedEntry, build_crl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed"),
]


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def _write(path: Path, obj: x509.Certificate | x509.CertificateRevocationList) -> Path:
    path.write_bytes(obj.public_bytes(Encoding.PEM))
    return path


@pytest.fixture(scope="module", params=["ed25519", "ecdsa-p256"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Certificates valid at the real current time, since openssl verify uses the clock."""
    pki: Pki = make_pki(request.param)
    now = datetime.now(UTC)
    good, revoked = (
        build_identity_certificate(
            pki.root,
            pki.root_key,
            generate_private_key().public_key(),
            user_name=name,
            email=f"{name}@example.org",
            not_before=now - timedelta(hours=1),
            not_after=now + timedelta(days=1),
        )
        for name in ("alice", "mallory")
    )
    entry = RevokedEntry(
        revoked.serial_number, now - timedelta(minutes=1), x509.ReasonFlags.key_compromise
    )
    root_crl = build_crl(
        pki.root,
        pki.root_key,
        [entry],
        crl_number=1,
        this_update=now - timedelta(minutes=1),
        next_update=now + timedelta(days=1),
    )
    aa_crl = build_crl(
        pki.aa,
        pki.aa_key,
        [RevokedEntry(42, now, x509.ReasonFlags.privilege_withdrawn)],
        crl_number=1,
        this_update=now - timedelta(minutes=1),
        next_update=now + timedelta(days=1),
        attribute_certificates=True,
    )
    d = tmp_path_factory.mktemp(f"openssl-{request.param}")
    return {
        "root": _write(d / "root.pem", pki.root),
        "good": _write(d / "good.pem", good),
        "revoked": _write(d / "revoked.pem", revoked),
        "root_crl": _write(d / "root.crl", root_crl),
        "aa_crl": _write(d / "aa.crl", aa_crl),
    }


def test_openssl_prints_identity_certificates(live: dict[str, Path]) -> None:
    out = _openssl("x509", "-in", live["good"], "-noout", "-text")
    assert out.returncode == 0, out.stderr
    assert "TLS Web Client Authentication" in out.stdout
    assert "email:alice@example.org" in out.stdout
    assert "URI:urn:certgate:user:alice" in out.stdout


def test_openssl_parses_both_crls(live: dict[str, Path]) -> None:
    root_crl = _openssl("crl", "-in", live["root_crl"], "-noout", "-text")
    assert root_crl.returncode == 0, root_crl.stderr
    assert "Key Compromise" in root_crl.stdout
    aa_crl = _openssl("crl", "-in", live["aa_crl"], "-noout", "-text")
    assert aa_crl.returncode == 0, aa_crl.stderr
    assert "Only Attribute Certificates" in aa_crl.stdout


def test_openssl_verify_accepts_good_and_rejects_revoked(live: dict[str, Path]) -> None:
    base = ("verify", "-CAfile", live["root"], "-crl_check", "-CRLfile", live["root_crl"])
    good = _openssl(*base, live["good"])
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _openssl(*base, live["revoked"])
    assert bad.returncode != 0
    assert "certificate revoked" in bad.stdout + bad.stderr
