"""Identity hygiene through the CLI, on both databases: one owner per key, disable, enable
and rm, each refusal one line naming what to do, each change audited."""

from __future__ import annotations

import json

from cli_runner import Certgate
from test_ca_cli import add_user, grant, ssh_keypair

from ca.revocation import REVOCATION_REASONS


def test_a_key_that_belongs_to_another_user_is_refused_naming_the_owner(
    certgate: Certgate,
) -> None:
    alice = certgate.user("alice")
    key = ssh_keypair(certgate.workdir, alice, "ed25519")
    certgate.ok("user", "add", alice, "--pubkey", f"{key}.pub")
    dave = certgate.user("dave")

    message = certgate.refused("user", "add", dave, "--pubkey", f"{key}.pub")

    assert f"already belongs to user {alice}" in message
    assert dave not in certgate.users()


def test_an_openssh_certificate_for_another_users_key_is_refused(certgate: Certgate) -> None:
    alice = certgate.user("alice")
    key = ssh_keypair(certgate.workdir, alice, "ed25519")
    certgate.ok("user", "add", alice, "--pubkey", f"{key}.pub")
    dave, _ = add_user(certgate, "dave")

    message = certgate.refused("ssh-cert", dave, "--pubkey", f"{key}.pub")

    assert f"already belongs to user {alice}" in message


def test_disable_enable_and_rm_are_audited_and_refuse_what_makes_no_sense(
    certgate: Certgate,
) -> None:
    name, _ = add_user(certgate, "life")
    ac = grant(certgate, name, "role=operator")
    head = certgate.last_seq()

    certgate.ok("user", "disable", name)
    assert "already disabled" in certgate.refused("user", "disable", name)
    shown = json.loads(certgate.ok("user", "show", name, "--json").stdout)
    assert shown["state"] == "disabled"
    certgate.ok("user", "enable", name)
    assert "is not disabled" in certgate.refused("user", "enable", name)
    removed = certgate.ok("user", "rm", name, "--reason", "affiliationChanged").stdout
    assert ac in removed and "2 certificate(s) revoked" in removed
    assert "already removed" in certgate.refused("user", "rm", name)
    listed = json.loads(certgate.ok("user", "list", "--json").stdout)
    assert [u["state"] for u in listed if u["name"] == name] == ["removed"]

    events = [(e.event_type, e.outcome) for e in certgate.audit_since(head) if e.user == name]
    assert [e for e in events if e[1] == "ok"] == [
        ("user.disable", "ok"), ("user.enable", "ok"), ("user.rm", "ok")]
    revoked = {c.serial: c.revocation_reason for c in certgate.certificates()
               if c.user == name}
    assert set(revoked.values()) == {"affiliationChanged"}


def test_revoke_help_lists_the_rfc_5280_reason_names(certgate: Certgate) -> None:
    help_text = " ".join(certgate.ok("revoke", "--help").stdout.split())
    for name in REVOCATION_REASONS:
        assert name in help_text
    assert "RFC 5280" in help_text
