"""Findings 4, 6 and 7 at the CLI: lifetimes an operator can bound, no overflow tracebacks,
OpenSSH certificates that work as issued, endless inputs refused, and certificate fields
escaped before they reach the terminal (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hostile_cli import HostileHome, make_home, ssh_keygen

from ca import keys
from ca.attribute_cert import AttributeCertificateIssuer
from ca.attributes import AttributeSet
from certgate.store import repositories as repo


@pytest.mark.parametrize("args,expect", [
    (["user", "add", "longlived", "--pubkey", "{key}", "--days", "99999999999"],
     "maximum identity certificate"),
    (["attr", "grant", "holder", "role=operator", "--valid", "1000000d"], "longer than"),
    (["attr", "grant", "holder", "role=operator", "--valid", "500d"],
     "maximum attribute certificate lifetime"),
    (["ssh-cert", "holder", "--pubkey", "{key}", "--valid", "30d"],
     "maximum ssh certificate lifetime"),
    (["attr", "verify", "/dev/zero"], "too large"),
    (["policy", "apply", "/dev/zero"], "too large"),
    (["user", "add", "zero", "--pubkey", "/dev/zero"], "too large"),
], ids=["identity-days-overflow", "valid-overflow", "attribute-lifetime", "ssh-lifetime",
        "attr-verify-dev-zero", "policy-dev-zero", "pubkey-dev-zero"])
def test_lifetimes_and_input_sizes_are_bounded(hostile: HostileHome, args: list[str],
                                               expect: str) -> None:
    key = f"{hostile.work / 'holder'}.pub"
    hostile.assert_refused(*[a.format(key=key) for a in args], expect=expect)


def test_limits_are_configurable(tmp_path: Path) -> None:
    home = make_home(tmp_path, None, '\n[limits]\nmax_attribute_lifetime = "2h"\n')
    key = ssh_keygen(home.work / "u")
    home.ok("user", "add", "u1", "--pubkey", f"{key}.pub")
    home.ok("attr", "grant", "u1", "role=operator", "--valid", "2h")
    home.assert_refused("attr", "grant", "u1", "role=operator", "--valid", "2h1m",
                        expect="maximum attribute certificate lifetime of 2h")


def test_unknown_or_nonsense_limits_stop_the_installation_from_opening(tmp_path: Path) -> None:
    home = make_home(tmp_path, None, "\n[limits]\nmax_auth_tries = -1\n")
    outcome = home.cli("user", "list")
    assert "limits.max_auth_tries must be positive" in outcome.refusal


def test_a_one_minute_ssh_certificate_is_valid_for_a_minute(hostile: HostileHome) -> None:
    """Finding 7: ``--valid 1m`` used to end the certificate at the moment of issue (it was
    back-dated by a minute for clock skew and the minute counted from there)."""
    out = hostile.work / "holder-cert.pub"
    before = datetime.now(UTC)
    hostile.ok("ssh-cert", "holder", "--pubkey", f"{hostile.work / 'holder'}.pub",
               "--valid", "1m", "--out", str(out))
    cert = asyncssh.read_certificate(str(out))
    valid_after, valid_before = cert._valid_after, cert._valid_before  # no public accessor
    assert valid_before >= int((before + timedelta(seconds=59)).timestamp())
    assert valid_after <= int(before.timestamp())
    assert valid_before > int(datetime.now(UTC).timestamp()), "already expired"


def test_ssh_cert_out_is_one_line_that_ssh_keygen_reads(hostile: HostileHome) -> None:
    """Finding 7: a blank line after the certificate made ssh warn ``invalid format``."""
    out = hostile.work / "holder2-cert.pub"
    hostile.ok("ssh-cert", "holder", "--pubkey", f"{hostile.work / 'holder'}.pub",
               "--out", str(out))
    data = out.read_bytes()
    assert data.endswith(b"\n") and not data.endswith(b"\n\n") and data.count(b"\n") == 1
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(out)], capture_output=True,
                           text=True, check=False)
    assert shown.returncode == 0 and "invalid format" not in shown.stderr, shown.stderr


def test_attr_verify_escapes_a_hostile_issuer_name(hostile: HostileHome) -> None:
    """Finding 4: an AC from a foreign AA whose name carries ESC[8m (which would hide the
    rest of the error) and a title-setting OSC: the refusal shows them escaped."""
    database = hostile.database()
    try:
        with database.read() as session:
            holder = repo.current_identity(session, "holder", datetime.now(UTC))
            assert holder is not None
    finally:
        database.dispose()
    holder_cert = x509.load_der_x509_certificate(holder.der)
    now = datetime.now(UTC).replace(microsecond=0)
    aa_key = keys.generate_private_key()
    evil = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         "evil\x1b]0;PWNED-TITLE\x07\x1b[8m AA\x1b[2J")])
    aa = (x509.CertificateBuilder().subject_name(evil).issuer_name(evil)
          .public_key(aa_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
          .sign(aa_key, None))
    ac = AttributeCertificateIssuer(aa, aa_key, gateway_name="gw.test").issue(
        holder_cert, AttributeSet(roles=("operator",)), not_before=now,
        not_after=now + timedelta(hours=1))
    path = hostile.file("evil.ac", ac)
    head = hostile.audit_head()
    outcome = hostile.cli("attr", "verify", path)
    message = outcome.refusal
    for text in (message, outcome.stdout):
        assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert "\\x1b" in message, message
    assert any(e.event_type == "attr.verify" for e in hostile.audit_since(head))
    hostile.assert_chain_intact()


def test_policy_show_escapes_invisible_characters_that_would_disguise_a_rule(
    hostile: HostileHome,
) -> None:
    """Finding 4: YAML admits bidi overrides and zero-width characters (not ESC), so a policy's
    text could read differently on the admin's terminal than it does to the evaluator."""
    disguised = ("version: 1\nrules:\n  - name: ops\n    description: \"harmless \u202e"
                 "ynam lla\"\n    effect: allow\n    vms: {names: [\"vm\u200b*\"]}\n"
                 "    privileges: [console.view]\n")
    hostile.ok("policy", "apply", hostile.file("disguised.yaml", disguised.encode()))
    shown = hostile.ok("policy", "show").stdout
    assert "\u202e" not in shown and "\u200b" not in shown
    assert 'description: "harmless \\u202eynam lla"' in shown
    assert 'vms: {names: ["vm\\u200b*"]}' in shown
