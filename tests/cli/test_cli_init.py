"""``certgate init``: what a new installation holds, and what init refuses to do."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cli_runner import Certgate, database_url_for, initialised

from ca.attribute_cert import parse_attribute_certificate

KEY_FILES = ("ca/root.key", "ca/aa.key", "gateway/host.key", "gateway/audit.key")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_init_creates_config_database_and_encrypted_keys(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    certgate = initialised(tmp_path, database_url_for(backend, request))
    assert (certgate.home / "certgate.toml").is_file()
    for name in KEY_FILES:
        key = certgate.home / name
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, name
        assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----"), name
    assert [e.event_type for e in certgate.audit()] == ["ca.init"]
    if backend == "sqlite":
        assert (certgate.home / "certgate.db").is_file()
    else:
        assert not (certgate.home / "certgate.db").exists()
        assert json.loads(certgate.ok("ca", "show", "--json").stdout)["database"].startswith(
            "postgresql"
        )

    message = certgate.refused("init")
    assert "already holds a certgate installation" in message
    refusal = certgate.audit()[-1]
    assert (refusal.event_type, refusal.outcome) == ("cli.refused", "error")
    assert refusal.details["command"] == "init"


def test_init_without_passphrase_writes_plain_keys_that_need_no_passphrase(
    tmp_path: Path,
) -> None:
    certgate = initialised(tmp_path, None, "--no-passphrase",
                           "--crl-url", "http://crl.example/certgate-ac.crl")
    for name in KEY_FILES:
        key = certgate.home / name
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----"), name
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, name
    no_passphrase = {"CERTGATE_CA_PASSPHRASE": None}
    (tmp_path / "work" / "k.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJgATwdI9P+uQeZ8WCP0Y/CRlxuf37maoVsyoOQoZ8sf\n"
    )
    certgate.ok("user", "add", "ann", "--pubkey", "k.pub", env=no_passphrase)
    # A short-lived AC of an installation that publishes a CRL points at that CRL.
    serial = certgate.ok("attr", "grant", "ann", "role=admin", env=no_passphrase).stdout.strip()
    ac = certgate.ok("attr", "export", serial, "--pem", env=no_passphrase).stdout
    assert parse_attribute_certificate(ac.encode()).crl_urls == (
        "http://crl.example/certgate-ac.crl",
    )
    assert [c.serial for c in certgate.certificates("attribute")] == [serial]


def test_encrypted_keys_are_not_used_without_the_passphrase(tmp_path: Path) -> None:
    certgate = initialised(tmp_path, None)
    message = certgate.refused("crl", env={"CERTGATE_CA_PASSPHRASE": None})
    assert "CERTGATE_CA_PASSPHRASE" in message


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
    "nosuchdialect://somewhere/db",
    "sqlite:////nonexistent-directory/certgate.db",
])
def test_init_with_an_unusable_database_leaves_no_home_behind(tmp_path: Path, url: str) -> None:
    certgate = Certgate(tmp_path / "home", tmp_path)
    message = certgate.refused("init", "--database-url", url)
    assert "database" in message
    assert not certgate.home.exists()
    assert [p.name for p in tmp_path.iterdir()] == []
