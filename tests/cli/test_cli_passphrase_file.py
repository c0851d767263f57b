"""The CA passphrase can come from a file (a systemd credential) instead of the environment."""

from __future__ import annotations

import subprocess

from cli_runner import CA_PASSPHRASE, Certgate


def _pubkey(certgate: Certgate, name: str) -> str:
    key = certgate.workdir / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return f"{key}.pub"


def test_passphrase_from_a_credential_file_signs(certgate: Certgate) -> None:
    secret = certgate.workdir / "ca-passphrase"
    secret.write_text(CA_PASSPHRASE + "\n")
    secret.chmod(0o600)
    name = certgate.user("cred")
    certgate.ok("user", "add", name, "--pubkey", _pubkey(certgate, name),
                env={"CERTGATE_CA_PASSPHRASE": None,
                     "CERTGATE_CA_PASSPHRASE_FILE": str(secret)})
    assert name in certgate.users()


def test_a_missing_or_empty_credential_file_is_one_clear_line(certgate: Certgate) -> None:
    name = certgate.user("nocred")
    pubkey = _pubkey(certgate, name)
    message = certgate.refused("user", "add", name, "--pubkey", pubkey, env={
        "CERTGATE_CA_PASSPHRASE": None,
        "CERTGATE_CA_PASSPHRASE_FILE": str(certgate.workdir / "absent")})
    assert "CERTGATE_CA_PASSPHRASE_FILE: cannot read" in message
    empty = certgate.workdir / "empty"
    empty.write_text("\n")
    message = certgate.refused("user", "add", name, "--pubkey", pubkey, env={
        "CERTGATE_CA_PASSPHRASE": None, "CERTGATE_CA_PASSPHRASE_FILE": str(empty)})
    assert message.endswith("is empty")
    assert name not in certgate.users()
