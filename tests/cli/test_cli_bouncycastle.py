"""``certgate attr verify`` accepts an AC that BouncyCastle built and signed with our AA key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bouncycastle import MISSING, SKIP_REASON, compile_peer, run_peer
from cryptography.hazmat.primitives.serialization import Encoding

from ca import keys
from certgate.installation import Installation

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)]


def _certgate(installation: Installation, *args: str) -> subprocess.CompletedProcess[str]:
    passphrase = installation.passphrase()
    assert passphrase is not None
    env = {**os.environ, "CERTGATE_HOME": str(installation.home.root),
           "CERTGATE_CA_PASSPHRASE": passphrase.decode()}
    env.pop("CERTGATE_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "certgate", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_an_ac_built_by_bouncycastle_with_our_aa_key_passes_attr_verify(
    installation: Installation, tmp_path: Path
) -> None:
    user_key = keys.generate_private_key("ed25519")
    issued = installation.ca.add_user("alice", email=None, public_key=user_key.public_key(),
                                   days=1)
    aa_key_pem = tmp_path / "aa-key.pem"  # BouncyCastle's peer reads an unencrypted PKCS#8
    keys.write_private_key(aa_key_pem, installation.ca.aa_key, None)
    aa_pem = tmp_path / "aa.pem"
    aa_pem.write_bytes(installation.aa_certificate.public_bytes(Encoding.PEM))
    holder_pem = tmp_path / "holder.pem"
    holder_pem.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    bc_ac = tmp_path / "bc-ac.der"
    classes = compile_peer(tmp_path / "classes")

    run_peer(classes, "make", aa_key_pem, aa_pem, holder_pem,
             installation.config.gateway_name, bc_ac)
    verified = _certgate(installation, "attr", "verify", str(bc_ac))

    assert verified.returncode == 0, verified.stderr
    assert f"holder      {issued.serial} (alice)" in verified.stdout
    assert "role=operator group=ops clearance=secret" in verified.stdout
    assert verified.stdout.rstrip().endswith("valid")

    assert _certgate(installation, "revoke", issued.serial).returncode == 0
    refused = _certgate(installation, "attr", "verify", str(bc_ac))
    assert refused.returncode == 1
    assert "revoked" in refused.stderr and "Traceback" not in refused.stderr
