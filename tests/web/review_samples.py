"""Review-site fixtures built from real parts: an installation, users with identity and
attribute certificates, VMs, a policy granting ``audit.review``, and sessions with real
asciicast recordings written by the gateway's own writer and audited by its own code."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from ca import keys
from ca.attributes import AttributeSet
from certgate.audit import sessions as session_log
from certgate.audit.chain import AuditEvent
from certgate.audit.recording import AsciicastWriter, recording_path
from certgate.fleet import add_vm, apply_policy
from certgate.installation import Installation

REVIEW_POLICY = """\
version: 1
rules:
  - name: operators
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [operator]}
    privileges: [console.view, console.interact]
  - name: auditors-everywhere
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [auditor]}
    privileges: [audit.review]
  - name: lab-auditors
    effect: allow
    vms: {labels: {env: lab}}
    require: {roles: [lab-auditor]}
    privileges: [audit.review]
"""

HOSTILE_OUTPUT = ("<script>document.title='pwned';window.__pwned=1</script>"
                  "\x1b[31mRED\x1b[0m \x1b]0;evil title\x07"
                  "<img src=x onerror=\"window.__pwned=2\">\r\n")


@dataclass(frozen=True)
class Person:
    name: str
    identity_serial: str
    cert_pem: Path
    key_pem: Path
    certificate: x509.Certificate


def add_person(inst: Installation, workdir: Path, name: str, *roles: str) -> Person:
    """A user with an ECDSA key (browsers do not do Ed25519 client certificates), an
    identity certificate and, if ``roles``, an attribute certificate holding them."""
    key = keys.generate_private_key("ecdsa-p256")
    issued = inst.ca.add_user(name, email=None, public_key=key.public_key(), days=1)
    cert_pem = workdir / f"{name}.crt"
    key_pem = workdir / f"{name}.key"
    cert_pem.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_pem.chmod(0o600)
    if roles:
        inst.ca.grant(name, AttributeSet(roles=tuple(roles)), valid_for=timedelta(hours=2))
    return Person(name, issued.serial, cert_pem, key_pem, issued.certificate)


def setup_fleet(inst: Installation) -> None:
    add_vm(inst, "lab01", "tcp:127.0.0.1:9", {"env": "lab"})
    add_vm(inst, "prod01", "tcp:127.0.0.1:9", {"env": "prod"})
    apply_policy(inst, REVIEW_POLICY, "review-policy.yaml")


_clock = itertools.count()


def recorded_session(inst: Installation, person: Person, vm: str, outputs: list[str], *,
                     started: datetime | None = None, reason: str = "client closed",
                     live: bool = False) -> session_log.ConsoleSession:
    """A session as the gateway records it: decision, start, a recording, end."""
    started = started or datetime.now(UTC) - timedelta(minutes=30)
    inst.audit.record(AuditEvent(
        "access.decide", "gateway:test", outcome="allow", user=person.name, vm=vm,
        serial=person.identity_serial, source="127.0.0.1",
        details={"privileges": ["console.interact", "console.view"], "mode": "interactive",
                 "matched_rules": ["operators"], "reasons": [
                     "allowed by rule operators (review-policy.yaml:3): console.interact, "
                     "console.view"],
                 "attributes": {"roles": ["operator"]}, "attribute_certificates": [],
                 "rejected_attribute_certificates": [], "policy_version": 1}))
    console = session_log.start_session(
        inst.database, user=person.name, vm=vm, identity_serial=person.identity_serial,
        source="127.0.0.1", privileges=["console.view", "console.interact"],
        gateway_id="test", now=started)
    path = recording_path(inst.home.recordings_dir, console.id)
    ticks = iter(float(n) for n in itertools.count())
    writer = AsciicastWriter(path, width=80, height=24, clock=lambda: next(ticks))
    for text in outputs:
        writer.output(text.encode())
    digest = writer.close()
    with inst.database.write() as session:
        from certgate.store.schema import ConsoleSessionRow

        row = session.get(ConsoleSessionRow, console.id)
        assert row is not None
        row.recording_path = str(path)
    if live:
        return console
    return session_log.end_session(
        inst.database, console.id, reason=reason, bytes_in=10,
        bytes_out=sum(len(t) for t in outputs), recording_sha256=digest,
        now=started + timedelta(seconds=next(_clock) % 50 + 5))
