"""Bad input is refused in one line, without a traceback, without a trace in the CA's state,
and with an audit event of the refusal.

Each case runs against an installation made by ``certgate init`` (SQLite and PostgreSQL).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import Certgate


@pytest.fixture(scope="module")
def holder(certgate: Certgate) -> str:
    """A user with a valid identity certificate, to grant attributes to."""
    key = certgate.workdir / "holder"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    certgate.ok("user", "add", "holder", "--pubkey", f"{key}.pub")
    return "holder"


def write(certgate: Certgate, name: str, data: bytes) -> str:
    path = certgate.workdir / name
    path.write_bytes(data)
    return str(path)


def state(certgate: Certgate) -> tuple[list[str], list[str]]:
    return certgate.users(), sorted(c.serial for c in certgate.certificates())


Case = Callable[[Certgate], tuple[list[str], str]]

CASES: dict[str, tuple[Case, str]] = {
    "malformed public key file": (
        lambda c: (["user", "add", "mallory", "--pubkey",
                    write(c, "bad.pub", b"ssh-ed25519 not-base64!!\n")], "user add"),
        "not a public key",
    ),
    "public key file that does not exist": (
        lambda c: (["user", "add", "mallory", "--pubkey", "missing.pub"], "user add"),
        "cannot read public key missing.pub",
    ),
    "malformed CSR": (
        lambda c: (["user", "add", "mallory", "--csr",
                    write(c, "bad.csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                        b"-----END CERTIFICATE REQUEST-----\n")], "user add"),
        "not a certificate signing request",
    ),
    "key file in an unwritable place": (
        lambda c: (["user", "add", "mallory", "--key-out", "/nonexistent/dir/m.key"],
                   "user add"),
        "cannot write /nonexistent/dir/m.key",
    ),
    "malformed attribute certificate": (
        lambda c: (["attr", "verify", write(c, "bad.ac", b"\x30\x03\x02\x01\x01")],
                   "attr verify"),
        "not a valid attribute certificate",
    ),
    "wrong CA passphrase": (
        lambda c: (["attr", "grant", "holder", "role=admin"], "attr grant"),
        "wrong passphrase",
    ),
    "unknown user": (
        lambda c: (["attr", "grant", "nobody", "role=admin"], "attr grant"),
        "no user named nobody",
    ),
    "unknown serial": (
        lambda c: (["revoke", "0a1b2c3d"], "revoke"),
        "no certificate with serial a1b2c3d",
    ),
    "serial that is not hexadecimal": (
        lambda c: (["attr", "export", "xyz", "--out", "x.der"], "attr export"),
        "not a serial number",
    ),
    "bad validity": (
        lambda c: (["attr", "grant", "holder", "role=admin", "--valid", "3 fortnights"],
                   "attr grant"),
        "--valid",
    ),
    "bad attribute assignment": (
        lambda c: (["attr", "grant", "holder", "rank=admiral"], "attr grant"),
        "bad attribute 'rank=admiral'",
    ),
    "bad attribute value": (
        lambda c: (["attr", "grant", "holder", "role=has space"], "attr grant"),
        "invalid role value",
    ),
    "bad target name": (
        lambda c: (["attr", "grant", "holder", "role=admin", "--target", "no/such vm"],
                   "attr grant"),
        "invalid VM name 'no/such vm'",
    ),
    "unknown revocation reason": (
        lambda c: (["revoke", "0a1b2c3d", "--reason", "boredom"], "revoke"),
        "unknown revocation reason",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_in_one_line_and_audited(
    certgate: Certgate, holder: str, case: str
) -> None:
    make, expected = CASES[case]
    args, command = make(certgate)
    env: dict[str, str | None] = {"CERTGATE_KEY_PASSPHRASE": "k"}
    if case == "wrong CA passphrase":
        env["CERTGATE_CA_PASSPHRASE"] = "not the passphrase"
    before, seq = state(certgate), certgate.last_seq()

    message = certgate.refused(*args, env=env)

    assert expected in message
    assert state(certgate) == before, "a refused command changed the CA's state"
    assert not Path(certgate.workdir / "m.key").exists()
    events = certgate.audit_since(seq)
    refusals = [e for e in events if e.event_type == "cli.refused"]
    assert len(refusals) == 1, [e.event_type for e in events]
    assert refusals[0].outcome == "error"
    assert refusals[0].details["command"] == command
    assert refusals[0].details["error"] == message
    assert all(e.event_type in ("cli.refused", "attr.verify") for e in events)


def test_a_failed_user_add_leaves_no_user_no_certificate_and_no_key(certgate: Certgate) -> None:
    key_out = certgate.workdir / "half.key"
    before = state(certgate)
    certgate.refused("user", "add", "half", "--key-out", str(key_out),
                     "--out", "/nonexistent/dir/half.pem", env={"CERTGATE_KEY_PASSPHRASE": "k"})
    assert state(certgate) == before
    assert not key_out.exists()


def test_a_missing_home_is_refused_in_one_line(tmp_path: Path) -> None:
    certgate = Certgate(tmp_path / "no-home", tmp_path)
    for args in (["ca", "show"], ["user", "list"], ["attr", "grant", "x", "role=y"]):
        message = certgate.refused(*args)
        assert message.startswith(f"no certgate installation at {tmp_path / 'no-home'}")
    assert not (tmp_path / "no-home").exists()
