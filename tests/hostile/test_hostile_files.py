"""Hostile files and arguments given to the CLI: each is refused in one line, changes nothing
in the store, is audited, and leaves the audit chain verifiable (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
from cryptography.x509.oid import NameOID
from hostile_cli import HostileHome

from certgate.audit.chain import AuditEvent
from certgate.audit.log import AuditLog


def _spki_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _csr_pem() -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    csr = CertificateSigningRequestBuilder().subject_name(
        Name([NameAttribute(NameOID.COMMON_NAME, "mallory")])).sign(key, None)
    return csr.public_bytes(serialization.Encoding.PEM)


def _csr_der_version(version: int) -> bytes:
    """A CSR whose version field says ``version`` (only 0 exists)."""
    der = bytearray(_csr_pem_to_der())
    marker = bytes([0x02, 0x01, 0x00])  # INTEGER 0, the first field of the request info
    at = der.index(marker)
    der[at + 2] = version
    return bytes(der)


def _csr_pem_to_der() -> bytes:
    from cryptography.x509 import load_pem_x509_csr

    return load_pem_x509_csr(_csr_pem()).public_bytes(serialization.Encoding.DER)


def _policy(rule_name: str = "ops") -> bytes:
    return (f"version: 1\nrules:\n  - name: {rule_name}\n    effect: allow\n"
            f"    vms: {{names: [vm01]}}\n    privileges: [console.view]\n").encode()


def _alias_bomb() -> bytes:
    window = "{days: [mon], hours: '08:00-18:00'}"
    lines = ["version: 1", f"w: &w {window}", "rules:", "  - name: r", "    effect: allow",
             "    vms: {names: [vm01]}", "    privileges: [console.view]",
             "    when: {time: [" + ", ".join(["*w"] * 3000) + "]}"]
    return "\n".join(lines).encode()


# (arguments, expected words in the one-line refusal); a callable builds files first.
Case = Callable[[HostileHome], list[str]]
CASES: dict[str, tuple[Case, str]] = {
    # finding 3: YAML alias expansion, depth, size
    "policy with YAML aliases (billion laughs)": (
        lambda h: ["policy", "apply", h.file("bomb.yaml", _alias_bomb())],
        "aliases"),
    "policy nested 20,000 deep": (
        lambda h: ["policy", "apply", h.file("deep.yaml", b"[" * 20000 + b"]" * 20000)],
        "nests deeper than"),
    "policy larger than the limit": (
        lambda h: ["policy", "apply", h.file("huge.yaml", _policy() + b"#" * (5 << 20))],
        "too large"),
    # finding 6: non-UTF-8 policy
    "policy that is not UTF-8": (
        lambda h: ["policy", "apply", h.file("latin1.yaml", _policy() + b"# caf\xe9\n")],
        "not UTF-8"),
    # finding 5: names that end in a newline
    "policy rule name ending in a newline": (
        lambda h: ["policy", "apply", h.file("nl.yaml", _policy('"ops\\n"'))],
        "invalid rule name"),
    # finding 8: PEM with trailing garbage or a second block
    "public key PEM with trailing garbage": (
        lambda h: ["user", "add", "mallory1", "--pubkey",
                   h.file("trail.pem", _spki_pem() + b"trailing garbage\n")],
        "unexpected data after the PEM block"),
    "public key PEM followed by a second block": (
        lambda h: ["user", "add", "mallory2", "--pubkey",
                   h.file("two.pem", _spki_pem() + _spki_pem())],
        "more than one PEM block"),
    "CSR PEM followed by a second block": (
        lambda h: ["user", "add", "mallory3", "--csr", h.file("two.csr", _csr_pem() * 2)],
        "more than one PEM block"),
    "CSR PEM with a non-base64 body": (
        lambda h: ["user", "add", "mallory4", "--csr",
                   h.file("bad.csr", b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n"
                                     b"-----END CERTIFICATE REQUEST-----\n")],
        "malformed PEM"),
    "CSR with an invalid version (found by fuzzing)": (
        lambda h: ["user", "add", "mallory7", "--csr", h.file("v1.csr", _csr_der_version(1))],
        "not a certificate signing request"),
    "attribute certificate PEM of 4 MB": (
        lambda h: ["attr", "verify", h.file("big.pem", b"-----BEGIN ATTRIBUTE CERTIFICATE-----\n"
                                            + b"QUJD\n" * (1 << 20)
                                            + b"-----END ATTRIBUTE CERTIFICATE-----\n")],
        "too large"),
    "attribute certificate PEM with a second block": (
        lambda h: ["attr", "verify", h.file("two.ac", (
            b"-----BEGIN ATTRIBUTE CERTIFICATE-----\nMAMCAQE=\n"
            b"-----END ATTRIBUTE CERTIFICATE-----\n") * 2)],
        "more than one PEM block"),
    # finding 6: huge numbers
    "audit show with a 23-digit id": (
        lambda h: ["audit", "show", "99999999999999999999999"], "between 1 and"),
    "attr grant --valid 99999999999999999999d": (
        lambda h: ["attr", "grant", "holder", "role=operator", "--valid",
                   "99999999999999999999d"], "invalid duration"),
    "attr grant --valid beyond 100 years": (
        lambda h: ["attr", "grant", "holder", "role=operator", "--valid", "99999999d"],
        "longer than"),
    "audit list --since a relative age before year 1": (
        lambda h: ["audit", "list", "--since", "999999999999w"], "before the year 1"),
    # finding 8: policy check --from not-an-ip
    "policy check --from not-an-ip": (
        lambda h: ["policy", "check", "holder", "vm01", "--from", "not-an-ip"],
        "--from wants an IP address"),
    # refusals that worked before (kept working)
    "malformed OpenSSH public key line": (
        lambda h: ["user", "add", "mallory5", "--pubkey",
                   h.file("bad.pub", b"ssh-ed25519 not-base64!!\n")], "not a public key"),
    "console URI with a trailing newline host": (
        lambda h: ["vm", "add", "vm-nl", "--console", "tcp:host\n:22"], "not a valid host"),
    "console URI with a non-ASCII port": (
        lambda h: ["vm", "add", "vm-port", "--console", "tcp:host:\u00b2\u00b2"], "port"),
    "unknown console URI scheme": (
        lambda h: ["vm", "add", "vm-scheme", "--console", "gopher://x"], "console URI"),
    "policy with an unknown key": (
        lambda h: ["policy", "apply", h.file("unknown.yaml", _policy() + b"extra: 1\n")],
        "unknown key"),
    "policy with a merge key": (
        lambda h: ["policy", "apply", h.file("merge.yaml", b"version: 1\nrules: []\n<<: {}\n")],
        "merge keys"),
    "grant of an unknown attribute": (
        lambda h: ["attr", "grant", "holder", "colour=blue"], "attribute"),
    "grant to an unknown user": (
        lambda h: ["attr", "grant", "nobody-here", "role=operator"], "nobody-here"),
    "malformed attribute certificate DER": (
        lambda h: ["attr", "verify", h.file("bad.ac", b"\x30\x03\x02\x01\x01")],
        "attribute certificate"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_is_refused_without_a_trace(hostile: HostileHome, case: str) -> None:
    build, expect = CASES[case]
    args = build(hostile)
    hostile.assert_refused(*args, expect=expect)


def test_a_trailing_newline_label_cannot_dodge_a_deny_rule(hostile: HostileHome) -> None:
    """Finding 5: ``--label $'env=prod\\n'`` used to make a VM a ``deny env=prod`` rule missed."""
    hostile.assert_refused("vm", "add", "prod2", "--console", "exec:/bin/cat",
                           "--label", "env=prod\n", expect="label")


def test_alias_bomb_is_refused_quickly(hostile: HostileHome) -> None:
    """Finding 3: refused before expansion (it took 102 s and 1.65 GB), so the store never
    holds it and the gateway never re-parses it. The bound is on work, not time: the refusal
    comes from the composer at the first alias."""
    from certgate.policy.errors import PolicyError
    from certgate.policy.loader import load_policy

    with pytest.raises(PolicyError, match=r":8:\d+: YAML aliases"):
        load_policy(_alias_bomb().decode())


def test_audit_show_escapes_control_characters(hostile: HostileHome) -> None:
    """Finding 4: an entry holding ESC, CSI (U+009B), OSC and a bidi override is shown
    with those characters escaped, in the table and in the details."""
    database = hostile.database()
    try:
        entry = AuditLog(database).record(AuditEvent(
            "auth.login", "gateway:gw", outcome="deny", vm="\x1b]0;PWNED\x07\x9b2J",
            details={"reason": "\x1b[8mhidden\u009b2J\u202eevil", "n": 1}))
    finally:
        database.dispose()
    shown = hostile.ok("audit", "show", str(entry.seq)).stdout
    listed = hostile.ok("audit", "list", "--limit", "3").stdout
    exported = hostile.ok("audit", "export").stdout
    for text in (shown, listed, exported):
        assert not any(ch in text for ch in "\x1b\x07\x9b\u202e"), repr(text)
    assert "\\x1b" in shown and "\\u009b" in shown and "\\u202e" in shown
    hostile.assert_chain_intact()


def test_error_messages_escape_what_they_quote(hostile: HostileHome) -> None:
    """Finding 4: a refusal that quotes outside data (here a file name with ESC[8m, which
    would hide the rest of the line) prints it escaped."""
    name = hostile.file("x\x1b[8mhidden.pub", b"garbage")
    message = hostile.assert_refused("user", "add", "mallory6", "--pubkey", name,
                                     expect="not a public key")
    assert "\x1b" not in message


def test_config_holding_a_database_password_must_be_private(tmp_path: Path) -> None:
    """Finding 8: a certgate.toml with a password in database_url is written 0600 by init,
    and refused when group- or world-readable."""
    from certgate.errors import HomeError
    from certgate.home import Home, HomeConfig

    config = HomeConfig("gw", "postgresql+psycopg://u:s3cret@127.0.0.1/db", "127.0.0.1",
                        2222, True)
    assert config.holds_password
    home = Home(tmp_path)
    home.root.mkdir(exist_ok=True)
    home.config_path.write_text(config.to_toml())
    home.config_path.chmod(0o644)
    with pytest.raises(HomeError, match="chmod 600"):
        home.config()
    home.config_path.chmod(0o600)
    assert home.config().database_url == config.database_url


def test_database_password_from_a_file_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from certgate.errors import HomeError
    from certgate.home import DATABASE_PASSWORD_ENV, Home, HomeConfig

    home = Home(tmp_path)
    config = HomeConfig("gw", "postgresql+psycopg://u@127.0.0.1/db", "127.0.0.1", 2222, True,
                        database_password_file="db.password")
    assert not config.holds_password
    home.config_path.write_text(config.to_toml())
    secret = tmp_path / "db.password"
    secret.write_text("pa:ss/w@rd\n")
    secret.chmod(0o640)
    with pytest.raises(HomeError, match="chmod 600"):
        home.database_url()
    secret.chmod(0o600)
    assert home.database_url() == "postgresql+psycopg://u:pa%3Ass%2Fw%40rd@127.0.0.1/db"
    monkeypatch.setenv(DATABASE_PASSWORD_ENV, "from-env")
    assert home.database_url() == "postgresql+psycopg://u:from-env@127.0.0.1/db"


@pytest.mark.postgres
def test_init_writes_a_password_holding_config_0600(tmp_path: Path, postgres: object) -> None:
    """Finding 8: ``certgate init --database-url`` with a password makes certgate.toml 0600."""
    import stat

    from sqlalchemy.engine import make_url

    from certgate.home import Home
    from certgate.provisioning import InitOptions, create_installation

    url = make_url(postgres.create_database())  # type: ignore[attr-defined]
    with_password = url.set(password="s3cret").render_as_string(hide_password=False)
    home = Home(tmp_path / "home")
    create_installation(home, InitOptions(gateway_name="gw", database_url=with_password),
                        passphrase=None, actor="test")
    assert stat.S_IMODE(home.config_path.stat().st_mode) == 0o600
    assert home.config().holds_password
