"""Administering what the gateway guards: VMs, policy versions and OpenSSH certificates.

Like the CA operations in ``authority.py``, each change and its audit event commit together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ca import keys, ssh_certs
from ca.serials import format_serial
from certgate.audit.log import append_in
from certgate.consoles.escape import DEFAULT_ESCAPE, EscapeSequence
from certgate.consoles.keeper import keep_mode
from certgate.consoles.uri import parse_console_uri
from certgate.errors import CertgateError
from certgate.firewall.policy_groups import check_policy_groups
from certgate.installation import Installation
from certgate.policy import Policy
from certgate.store import repositories as repo

VM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def parse_labels(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not LABEL.fullmatch(key) or not LABEL.fullmatch(value):
            raise CertgateError(f"label {item!r}: expected key=value (letters, digits, . _ -)")
        labels[key] = value
    return labels


def add_vm(inst: Installation, name: str, console_uri: str, labels: dict[str, str], *,
           keep: str | None = None, escape: str | None = None) -> repo.VM:
    """Register a VM; ``keep``/``escape`` None mean the defaults (see consoles.keeper)."""
    if not VM_NAME.fullmatch(name):
        raise CertgateError(
            f"VM name {name!r}: use lower-case letters, digits, '.', '_' or '-' (max 64)"
        )
    target = parse_console_uri(console_uri)
    mode = keep_mode(target, keep)
    if escape is not None:
        EscapeSequence.parse(escape)
    with inst.admin_write() as session:
        vm = repo.add_vm(session, name, str(target), labels, keep=keep, escape=escape)
        append_in(session, [inst.event("vm.add", outcome="ok", vm=name,
                                       details={"console": str(target), "labels": labels,
                                                "keep": str(mode),
                                                "escape": escape or DEFAULT_ESCAPE})])
    return vm


def set_vm_console(inst: Installation, name: str, *, keep: str | None = None,
                   escape: str | None = None) -> repo.VM:
    """Change whether the gateway keeps a VM's console, or its escape menu prefix."""
    if keep is None and escape is None:
        raise CertgateError("nothing to change: give --keep and/or --escape")
    if escape is not None:
        EscapeSequence.parse(escape)
    with inst.admin_write() as session:
        current = repo.get_vm(session, name)
        if keep is not None:
            keep_mode(parse_console_uri(current.console_uri), keep)
        vm = repo.set_vm_console_options(session, name, keep=keep, escape=escape)
        append_in(session, [inst.event("vm.set", outcome="ok", vm=name, details={
            "keep": str(keep_mode(parse_console_uri(vm.console_uri), vm.keep)),
            "escape": vm.escape or DEFAULT_ESCAPE})])
    return vm


def remove_vm(inst: Installation, name: str) -> repo.VM:
    with inst.admin_write() as session:
        vm = repo.remove_vm(session, name)
        append_in(session, [inst.event("vm.remove", outcome="ok", vm=name,
                                       details={"console": vm.console_uri})])
    return vm


@dataclass(frozen=True)
class AppliedPolicy:
    version: repo.PolicyVersion
    policy: Policy
    unchanged: bool


def apply_policy(inst: Installation, text: str, source_name: str) -> AppliedPolicy:
    """Validate and store a new policy version (no new version if the text is unchanged)."""
    # The YAML parser is imported here, where a policy is parsed, not by every fleet command.
    from certgate.policy.loader import load_policy, policy_fingerprint

    policy = load_policy(text, source_name)
    fingerprint = policy_fingerprint(text)
    with inst.admin_write() as session:
        check_policy_groups(session, policy)
        current = repo.current_policy(session)
        if current is not None and current.fingerprint == fingerprint:
            return AppliedPolicy(current, policy, unchanged=True)
        version = repo.add_policy_version(
            session, source=text, source_name=source_name, fingerprint=fingerprint,
            applied_by=inst.actor,
        )
        append_in(session, [inst.event(
            "policy.apply", outcome="ok",
            details={"version": version.version, "fingerprint": fingerprint,
                     "source": source_name, "rules": [r.name for r in policy.rules],
                     "previous": current.version if current else None})])
    return AppliedPolicy(version, policy, unchanged=False)


def issue_ssh_certificate(
    inst: Installation, user: str, public_key: keys.PublicKey, valid_for: timedelta
) -> tuple[bytes, str]:
    """A short-lived OpenSSH user certificate bound to the user's current identity."""
    if valid_for <= timedelta(0):
        raise CertgateError("--valid must be a positive duration")
    inst.config.limits.check_lifetime("ssh", valid_for)
    ca_key = keys.read_private_key(inst.home.ssh_ca_key, inst.passphrase())
    with inst.admin_write() as session:
        identity = inst.ca.current_identity(session, user)
        repo.bind_key(session, keys.spki_sha256(public_key), user, datetime.now(UTC))
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(minutes=1)  # clock skew; the lifetime counts from now
        end = min(now + valid_for, identity.not_after)
        serial = ssh_certs.new_ssh_serial()
        line = ssh_certs.build_user_certificate(
            ca_key, public_key, key_id=f"{user}:{identity.serial}", serial=serial,
            not_before=start, not_after=end,
        )
        blob = _certificate_blob(line)
        serial_text = format_serial(serial)
        repo.add_certificate(
            session, serial=serial_text, kind=repo.SSH, user=user, der=blob,
            subject=f"openssh user certificate for {user}", not_before=start, not_after=end,
            holder_serial=identity.serial, key_fingerprint=keys.spki_sha256(public_key),
        )
        append_in(session, [inst.event(
            "ssh-cert.issue", outcome="ok", user=user, serial=serial_text,
            details={"identity": identity.serial, "not_after": end.isoformat(),
                     "key": ssh_certs.ssh_fingerprint(public_key)})])
    return line, serial_text


def _certificate_blob(line: bytes) -> bytes:
    import base64

    return base64.b64decode(line.split()[1])
