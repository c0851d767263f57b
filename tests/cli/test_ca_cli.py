"""The CA admin CLI as an administrator uses it: users, attribute certificates, revocation.

Every test drives the real ``certgate`` command against an installation made by
``certgate init``, on SQLite and on PostgreSQL, and checks the result with independent
tools (OpenSSL, ssh-keygen, pyca/cryptography) where one exists.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from cli_runner import KEY_PASSPHRASE, Certgate
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

SSH_KEY_TYPES = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa-p256": ["-t", "ecdsa", "-b", "256"],
    "rsa-3072": ["-t", "rsa", "-b", "3072"],
}


def spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)


def ssh_keypair(directory: Path, name: str, key_type: str) -> Path:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", *SSH_KEY_TYPES[key_type], "-N", "", "-C", name,
                    "-f", str(path)], check=True)
    return path


def add_user(certgate: Certgate, prefix: str = "user") -> tuple[str, Path]:
    """A new user with an Ed25519 key from ssh-keygen; returns the name and the cert file."""
    name = certgate.user(prefix)
    key = ssh_keypair(certgate.workdir, name, "ed25519")
    out = certgate.workdir / f"{name}.pem"
    certgate.ok("user", "add", name, "--email", f"{name}@example.org",
                "--pubkey", f"{key}.pub", "--out", str(out))
    return name, out


def grant(certgate: Certgate, name: str, *args: str) -> str:
    return certgate.ok("attr", "grant", name, *args).stdout.strip()


def export_ac(certgate: Certgate, serial: str, *extra: str) -> Path:
    path = certgate.workdir / f"{serial}{'.pem' if '--pem' in extra else '.der'}"
    certgate.ok("attr", "export", serial, "--out", str(path), *extra)
    return path


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# -- the CA ------------------------------------------------------------------------------------


def test_ca_show_names_root_attribute_authority_and_database(certgate: Certgate) -> None:
    info = json.loads(certgate.ok("ca", "show", "--json").stdout)
    assert info["gateway_name"] == "gw.test"
    assert info["home"] == str(certgate.home)
    assert info["root"]["subject"] == info["root"]["issuer"]
    assert info["attribute_authority"]["issuer"] == info["root"]["subject"]
    assert "password" not in info["database"]
    text = certgate.ok("ca", "show").stdout
    assert info["root"]["serial"] in text
    assert info["attribute_authority"]["serial"] in text


def test_ca_export_gives_the_root_ca_and_the_non_ca_attribute_authority(
    certgate: Certgate,
) -> None:
    root = x509.load_pem_x509_certificate(certgate.ok("ca", "export").stdout.encode())
    aa = x509.load_pem_x509_certificate(certgate.ok("ca", "export", "--aa").stdout.encode())
    info = json.loads(certgate.ok("ca", "show", "--json").stdout)
    assert format(root.serial_number, "x") == info["root"]["serial"]
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not aa.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aa.verify_directly_issued_by(root)


# -- users and identity certificates -------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(SSH_KEY_TYPES))
def test_user_add_certifies_an_openssh_public_key(certgate: Certgate, key_type: str) -> None:
    name = certgate.user(key_type)
    key = ssh_keypair(certgate.workdir, name, key_type)
    outcome = certgate.ok("user", "add", name, "--email", f"{name}@example.org",
                          "--pubkey", f"{key}.pub")
    cert = x509.load_pem_x509_certificate(outcome.stdout.encode())
    private = serialization.load_ssh_private_key(key.read_bytes(), None)
    assert spki(cert.public_key()) == spki(private.public_key())
    assert f"identity certificate {format(cert.serial_number, 'x')}" in outcome.stderr

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [f"{name}@example.org"]
    assert any(name in uri for uri in san.get_values_for_type(x509.UniformResourceIdentifier))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_user_add_certifies_a_pem_public_key(certgate: Certgate) -> None:
    name = certgate.user("pem")
    key_file = certgate.workdir / f"{name}.key"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(key_file), cwd=certgate.workdir)
    openssl("pkey", "-in", str(key_file), "-pubout", "-out", f"{key_file}.pub",
            cwd=certgate.workdir)
    out = certgate.workdir / f"{name}.pem"
    certgate.ok("user", "add", name, "--pubkey", f"{key_file}.pub", "--out", str(out))
    private = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert spki(load_cert(out).public_key()) == spki(private.public_key())


def test_user_add_certifies_the_key_of_an_openssl_csr(certgate: Certgate) -> None:
    name = certgate.user("csr")
    key_file, csr_file = certgate.workdir / f"{name}.key", certgate.workdir / f"{name}.csr"
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", str(key_file), "-subj", f"/CN={name}",
                   "-out", str(csr_file), cwd=certgate.workdir)
    assert made.returncode == 0, made.stderr
    cert = x509.load_pem_x509_certificate(
        certgate.ok("user", "add", name, "--csr", str(csr_file)).stdout.encode()
    )
    csr = x509.load_pem_x509_csr(csr_file.read_bytes())
    assert spki(cert.public_key()) == spki(csr.public_key())


def test_user_add_refuses_a_csr_whose_signature_is_corrupted(certgate: Certgate) -> None:
    name = certgate.user("badcsr")
    key_file, csr_file = certgate.workdir / f"{name}.key", certgate.workdir / f"{name}.csr"
    openssl("req", "-new", "-newkey", "ed25519", "-nodes", "-keyout", str(key_file),
            "-subj", f"/CN={name}", "-outform", "DER", "-out", str(csr_file),
            cwd=certgate.workdir)
    der = bytearray(csr_file.read_bytes())
    der[-1] ^= 0x01  # the last byte belongs to the signature
    csr_file.write_bytes(bytes(der))

    message = certgate.refused("user", "add", name, "--csr", str(csr_file))
    assert "signature" in message
    assert name not in certgate.users()


def test_generated_openssh_key_is_encrypted_and_matches_the_certificate(
    certgate: Certgate,
) -> None:
    name = certgate.user("gen")
    key_out, cert_out = certgate.workdir / f"{name}.key", certgate.workdir / f"{name}.pem"
    certgate.ok("user", "add", name, "--key-out", str(key_out), "--out", str(cert_out),
                env={"CERTGATE_KEY_PASSPHRASE": KEY_PASSPHRASE})
    assert stat.S_IMODE(key_out.stat().st_mode) == 0o600
    derived = subprocess.run(["ssh-keygen", "-y", "-P", KEY_PASSPHRASE, "-f", str(key_out)],
                             capture_output=True, text=True, check=True).stdout
    public = serialization.load_ssh_public_key(derived.encode())
    assert spki(public) == spki(load_cert(cert_out).public_key())
    wrong = subprocess.run(["ssh-keygen", "-y", "-P", "not it", "-f", str(key_out)],
                           capture_output=True, text=True)
    assert wrong.returncode != 0


def test_generated_pem_key_opens_with_the_key_passphrase(certgate: Certgate) -> None:
    name = certgate.user("genpem")
    key_out, cert_out = certgate.workdir / f"{name}.key", certgate.workdir / f"{name}.pem"
    certgate.ok("user", "add", name, "--key-out", str(key_out), "--key-format", "pem",
                "--key-type", "ecdsa-p256", "--out", str(cert_out),
                env={"CERTGATE_KEY_PASSPHRASE": KEY_PASSPHRASE})
    assert key_out.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_out.read_bytes(), KEY_PASSPHRASE.encode())
    assert spki(key.public_key()) == spki(load_cert(cert_out).public_key())


def test_generated_pkcs12_bundles_key_certificate_and_root(certgate: Certgate) -> None:
    name = certgate.user("p12")
    bundle = certgate.workdir / f"{name}.p12"
    certgate.ok("user", "add", name, "--key-out", str(bundle), "--key-format", "pkcs12",
                env={"CERTGATE_KEY_PASSPHRASE": KEY_PASSPHRASE})
    key, cert, extra = pkcs12.load_key_and_certificates(bundle.read_bytes(),
                                                        KEY_PASSPHRASE.encode())
    root = x509.load_pem_x509_certificate(certgate.ok("ca", "export").stdout.encode())
    assert key is not None and cert is not None
    assert spki(key.public_key()) == spki(cert.public_key())
    assert extra == [root]
    cert.verify_directly_issued_by(root)


def test_a_generated_key_needs_a_key_passphrase(certgate: Certgate) -> None:
    name = certgate.user("nopass")
    message = certgate.refused("user", "add", name, "--key-out",
                               str(certgate.workdir / f"{name}.key"))
    assert "CERTGATE_KEY_PASSPHRASE" in message
    assert name not in certgate.users()


def test_user_list_and_show_report_users_and_their_certificates(certgate: Certgate) -> None:
    name, cert_file = add_user(certgate, "listed")
    serial = format(load_cert(cert_file).serial_number, "x")
    ac_serial = grant(certgate, name, "role=operator")

    listed = {u["name"]: u for u in json.loads(certgate.ok("user", "list", "--json").stdout)}
    assert listed[name]["email"] == f"{name}@example.org"
    assert [c["serial"] for c in listed[name]["identity_certificates"]] == [serial]

    shown = json.loads(certgate.ok("user", "show", name, "--json").stdout)
    assert shown["identity_certificates"][0]["state"] == "valid"
    assert [c["serial"] for c in shown["attribute_certificates"]] == [ac_serial]
    assert name in certgate.ok("user", "list").stdout


def test_adding_a_user_twice_is_refused(certgate: Certgate) -> None:
    name, _ = add_user(certgate, "twice")
    key = ssh_keypair(certgate.workdir, f"{name}-second", "ed25519")
    assert "already exists" in certgate.refused("user", "add", name, "--pubkey", f"{key}.pub")
    assert len([c for c in certgate.certificates("identity") if c.user == name]) == 1


# -- attribute certificates --------------------------------------------------------------------


def test_grant_prints_the_serial_of_a_new_attribute_certificate(certgate: Certgate) -> None:
    name, _ = add_user(certgate, "grantee")
    serial = grant(certgate, name, "role=admin", "group=ops", "clearance=secret",
                   "grant=console.break", "--valid", "2h", "--target", "vm1")
    assert serial == serial.lower() and int(serial, 16) > 0

    listed = json.loads(certgate.ok("attr", "list", name, "--json").stdout)
    assert [c["serial"] for c in listed] == [serial]
    assert listed[0]["attributes"] == {"roles": ["admin"], "groups": ["ops"],
                                       "clearance": "secret", "grants": ["console.break"]}
    assert listed[0]["targets"] == ["vm1"]
    everyone = json.loads(certgate.ok("attr", "list", "--json").stdout)
    assert serial in {c["serial"] for c in everyone}


def test_one_grant_for_several_users_issues_one_ac_each_all_or_none(certgate: Certgate) -> None:
    first, _ = add_user(certgate, "crew")
    second, _ = add_user(certgate, "crew")
    serials = certgate.ok("attr", "grant", f"{first},{second}", "role=operator",
                          "--valid", "8h").stdout.split()
    assert len(serials) == 2 and len(set(serials)) == 2
    holders = {c["serial"]: c["user"]
               for c in json.loads(certgate.ok("attr", "list", "--json").stdout)}
    assert [holders[s] for s in serials] == [first, second]

    before = len(certgate.certificates("attribute"))
    message = certgate.refused("attr", "grant", f"{first},nobody-here", "role=operator")
    assert "nobody-here" in message
    assert len(certgate.certificates("attribute")) == before  # the first user got nothing


def test_exported_attribute_certificate_is_der_openssl_can_parse(certgate: Certgate) -> None:
    name, _ = add_user(certgate, "export")
    serial = grant(certgate, name, "role=viewer")
    der_file = export_ac(certgate, serial)
    parsed = openssl("asn1parse", "-inform", "DER", "-in", str(der_file), cwd=certgate.workdir)
    assert parsed.returncode == 0, parsed.stderr
    assert ":role" in parsed.stdout and "X509v3 AC Targeting" in parsed.stdout
    assert serial.upper() in parsed.stdout

    pem_file = export_ac(certgate, serial, "--pem")
    assert pem_file.read_text().startswith("-----BEGIN ATTRIBUTE CERTIFICATE-----")
    reparsed = openssl("asn1parse", "-in", str(pem_file), cwd=certgate.workdir)
    assert reparsed.stdout == parsed.stdout


def test_verify_accepts_a_valid_attribute_certificate(certgate: Certgate) -> None:
    name, _ = add_user(certgate, "verify")
    serial = grant(certgate, name, "role=admin", "group=ops", "--target", "vm1")
    ac_file = export_ac(certgate, serial)

    shown = certgate.ok("attr", "verify", str(ac_file)).stdout
    assert name in shown and "role=admin" in shown and "group=ops" in shown
    assert shown.rstrip().endswith("valid")
    certgate.ok("attr", "verify", str(ac_file), "--vm", "vm1")
    report = json.loads(certgate.ok("attr", "verify", str(ac_file), "--json").stdout)
    assert report["valid"] and report["holder_user"] == name and report["serial"] == serial


def test_verify_refuses_an_attribute_certificate_for_another_vm(certgate: Certgate) -> None:
    name, _ = add_user(certgate, "target")
    ac_file = export_ac(certgate, grant(certgate, name, "role=admin", "--target", "vm1"))
    outcome = certgate.run("attr", "verify", str(ac_file), "--vm", "vm2")
    assert outcome.code == 1
    assert outcome.error_lines == [f"certgate: error: {outcome.error_lines[0][17:]}"]
    assert "vm2" in outcome.stderr


def test_a_revoked_attribute_certificate_no_longer_verifies(certgate: Certgate) -> None:
    name, _ = add_user(certgate, "revac")
    serial = grant(certgate, name, "grant=console.break")
    ac_file = export_ac(certgate, serial)
    revoked = certgate.ok("revoke", serial, "--reason", "privilegeWithdrawn").stdout
    assert serial in revoked

    outcome = certgate.run("attr", "verify", str(ac_file))
    assert outcome.code == 1 and "revoked" in outcome.stderr
    assert serial not in certgate.ok("attr", "list", name).stdout
    everything = json.loads(certgate.ok("attr", "list", name, "--all", "--json").stdout)
    assert [(c["serial"], c["state"]) for c in everything] == [(serial, "revoked")]
    assert "already revoked" in certgate.refused("revoke", serial)


def test_revoking_the_identity_certificate_invalidates_its_attribute_certificates(
    certgate: Certgate,
) -> None:
    name, cert_file = add_user(certgate, "revid")
    ac_file = export_ac(certgate, grant(certgate, name, "role=admin"))
    certgate.ok("revoke", format(load_cert(cert_file).serial_number, "x"),
                "--reason", "keyCompromise")
    outcome = certgate.run("attr", "verify", str(ac_file))
    assert outcome.code == 1 and "revoked" in outcome.stderr
    assert "has no valid identity certificate" in certgate.refused("attr", "grant", name,
                                                                   "role=admin")


def test_crls_list_revoked_certificates_for_openssl(certgate: Certgate) -> None:
    work = certgate.workdir
    name, cert_file = add_user(certgate, "crl")
    root = work / "root.pem"
    certgate.ok("ca", "export", "--out", str(root))
    ac_serial = grant(certgate, name, "role=admin", "--valid", "30d")

    def verify_with_fresh_crl() -> subprocess.CompletedProcess[str]:
        certgate.ok("crl", "--out", str(work / "id.crl"), "--ac-out", str(work / "ac.crl"))
        return openssl("verify", "-crl_check", "-CAfile", str(root), "-CRLfile",
                       str(work / "id.crl"), str(cert_file), cwd=work)

    before = verify_with_fresh_crl()
    assert before.returncode == 0 and "OK" in before.stdout, before.stdout + before.stderr

    certgate.ok("revoke", format(load_cert(cert_file).serial_number, "x"))
    certgate.ok("revoke", ac_serial)
    after = verify_with_fresh_crl()
    assert after.returncode != 0
    assert "certificate revoked" in after.stdout + after.stderr

    ac_crl = openssl("crl", "-in", str(work / "ac.crl"), "-noout", "-text", cwd=work)
    assert ac_crl.returncode == 0 and ac_serial.upper() in ac_crl.stdout
    assert "Only Attribute Certificates" in ac_crl.stdout

    certgate.ok("crl", "--der", "--out", str(work / "id.der"), "--ac-out",
                str(work / "ac.der"))
    for der in ("id.der", "ac.der"):
        parsed = openssl("crl", "-inform", "DER", "-in", str(work / der), "-noout", cwd=work)
        assert parsed.returncode == 0, parsed.stderr
    both = certgate.ok("crl").stdout
    assert both.count("-----BEGIN X509 CRL-----") == 2


def test_serials_are_printed_in_lowercase_hex_and_accepted_as_openssl_spells_them(
    certgate: Certgate,
) -> None:
    name, _ = add_user(certgate, "serial")
    serial = grant(certgate, name, "role=admin")
    assert serial == format(int(serial, 16), "x")
    der = export_ac(certgate, serial).read_bytes()
    padded = serial if len(serial) % 2 == 0 else "0" + serial
    colons = ":".join(padded[i:i + 2] for i in range(0, len(padded), 2)).upper()
    for typed in (f"0x{serial}", serial.upper(), colons):
        path = certgate.workdir / "typed.der"
        certgate.ok("attr", "export", typed, "--out", str(path))
        assert path.read_bytes() == der, typed
    assert serial in certgate.ok("revoke", colons).stdout


# -- the audit trail ---------------------------------------------------------------------------


def test_every_ca_operation_leaves_an_audit_event(certgate: Certgate) -> None:
    start = certgate.last_seq()
    name, cert_file = add_user(certgate, "audited")
    identity = format(load_cert(cert_file).serial_number, "x")
    serial = grant(certgate, name, "role=admin")
    ac_file = export_ac(certgate, serial)
    certgate.ok("attr", "verify", str(ac_file))
    certgate.ok("revoke", serial)
    certgate.ok("crl", "--out", str(certgate.workdir / "audited.crl"))
    certgate.refused("user", "show", f"{name}-nobody")

    events = [(e.event_type, e.outcome, e.user, e.serial) for e in certgate.audit_since(start)]
    assert events == [
        ("user.add", "ok", name, identity),
        ("attr.grant", "ok", name, serial),
        ("attr.verify", "ok", name, serial),
        ("cert.revoke", "ok", name, serial),
        ("crl.issue", "ok", None, None),
        ("crl.issue", "ok", None, None),
        ("cli.refused", "error", None, None),
    ]
    entries = certgate.audit_since(start)
    assert all(e.actor.startswith("cli:") for e in entries)
    assert entries[-1].details["command"] == "user show"
    assert "no user named" in entries[-1].details["error"]


def test_the_first_audit_event_records_the_initialisation(certgate: Certgate) -> None:
    first = certgate.audit()[0]
    info = json.loads(certgate.ok("ca", "show", "--json").stdout)
    assert (first.seq, first.event_type, first.outcome) == (1, "ca.init", "ok")
    assert first.serial == info["root"]["serial"]
    assert first.details["serials"]["aa"] == info["attribute_authority"]["serial"]
