"""BouncyCastle as an independent peer: it reads our ACs and we read its ACs."""

from datetime import timedelta
from pathlib import Path

import pytest
from bouncycastle import MISSING, SKIP_REASON, compile_peer, run_peer
from ca_pki import GATEWAY, Pki
from cryptography.hazmat.primitives.serialization import Encoding

from ca.attribute_cert import parse_attribute_certificate
from ca.attributes import OID_CLEARANCE_POLICY, OID_GRANTS, AttributeSet, ClearanceLevel
from ca.keys import write_private_key
from ca.serials import format_serial
from ca.verify import verify_attribute_certificate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON),
]


@pytest.fixture(scope="session")
def bc_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile the Java peer once per session."""
    return compile_peer(tmp_path_factory.mktemp("bc-classes"))


_java = run_peer


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bouncycastle_verifies_and_reads_our_ac(
    any_pki: Pki, bc_classes: Path, tmp_path: Path
) -> None:
    der = any_pki.issue_ac(targets=["vm1"])
    ac_path = _pem(tmp_path / "ac.der", der)
    aa_path = _pem(tmp_path / "aa.pem", any_pki.aa.public_bytes(Encoding.PEM))
    lines = _java(bc_classes, "parse", ac_path, aa_path).splitlines()
    assert "signature valid" in lines
    assert f"holder-serial {format_serial(any_pki.identity.serial_number)}" in lines
    assert "attr 2.5.4.72 urn:certgate:role:operator" in lines
    assert "attr 1.3.6.1.5.5.7.10.4 ops" in lines
    assert f"attr {OID_GRANTS} console.break" in lines
    # ClassList octets/pad bits: 0x10 with 4 unused bits = named bit 3 (secret)
    assert f"attr 2.5.4.55 {OID_CLEARANCE_POLICY} 10/4" in lines
    assert "targeting-critical true" in lines
    assert f"target certgate:gateway:{GATEWAY}" in lines
    assert "target certgate:vm:vm1" in lines


def test_we_verify_an_ac_made_by_bouncycastle(
    any_pki: Pki, bc_classes: Path, tmp_path: Path
) -> None:
    key_path = tmp_path / "aa-key.pem"
    write_private_key(key_path, any_pki.aa_key, None)
    aa_path = _pem(tmp_path / "aa.pem", any_pki.aa.public_bytes(Encoding.PEM))
    holder_path = _pem(tmp_path / "holder.pem", any_pki.identity.public_bytes(Encoding.PEM))
    out = tmp_path / "bc-ac.der"
    _java(bc_classes, "make", key_path, aa_path, holder_path, GATEWAY, out)

    ac = parse_attribute_certificate(out.read_bytes())
    assert ac.no_rev_avail and ac.has_targeting and ac.target_gateways == (GATEWAY,)
    assert ac.holder_serial == any_pki.identity.serial_number
    attributes = verify_attribute_certificate(
        ac,
        aa_cert=any_pki.aa,
        root_cert=any_pki.root,
        holder_cert=any_pki.identity,
        at=ac.not_before + timedelta(seconds=30),
        gateway_name=GATEWAY,
    )
    assert attributes == AttributeSet(
        roles=("operator",), groups=("ops",), clearance=ClearanceLevel.SECRET
    )
