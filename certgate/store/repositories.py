"""Queries over the store that return domain objects, so callers never hold ORM rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certgate.errors import ConflictError, NotFoundError
from certgate.store import access_reads as reads
from certgate.store.changes import SessionSQL, mark_changed

# The records live apart so the access core can use them without SQLAlchemy; they are
# re-exported here, where callers have always found them.
from certgate.store.records import ATTRIBUTE as ATTRIBUTE
from certgate.store.records import IDENTITY as IDENTITY
from certgate.store.records import SSH as SSH
from certgate.store.records import VM as VM
from certgate.store.records import Holder as Holder
from certgate.store.records import IssuedCertificate as IssuedCertificate
from certgate.store.records import PolicyVersion as PolicyVersion
from certgate.store.records import User as User
from certgate.store.records import now as now
from certgate.store.schema import (
    AuditHeadRow,
    CertificateRow,
    CrlCounterRow,
    KeyBindingRow,
    PolicyVersionRow,
    UserRow,
    VMNicRow,
    VMRow,
)
from certgate.store.sql import json_param, placeholders, time_param

# -- users ------------------------------------------------------------------------------------


def _user(row: UserRow) -> User:
    return User(row.name, row.email, row.created_at, row.disabled_at, row.removed_at)


def add_user(session: Session, name: str, email: str | None) -> User:
    if session.execute(select(UserRow.id).where(UserRow.name == name)).first():
        raise ConflictError(f"user {name} already exists")
    row = UserRow(name=name, email=email, created_at=now())
    session.add(row)
    mark_changed(session)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"user {name} already exists") from exc
    return _user(row)


def _user_row(session: Session, name: str) -> UserRow:
    row = session.execute(select(UserRow).where(UserRow.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no user named {name}")
    return row


def get_user(session: Session, name: str) -> User:
    return _user(_user_row(session, name))


def list_users(session: Session) -> list[User]:
    return [_user(r) for r in session.execute(select(UserRow).order_by(UserRow.name)).scalars()]


def set_user_disabled(session: Session, name: str, at: datetime | None) -> User:
    """Disable (``at`` set) or enable (None) a user; the change counter moves."""
    row = _user_row(session, name)
    row.disabled_at = at
    mark_changed(session)
    session.flush()
    return _user(row)


def mark_user_removed(session: Session, name: str, at: datetime) -> User:
    row = _user_row(session, name)
    row.removed_at = at
    if row.disabled_at is None:
        row.disabled_at = at
    mark_changed(session)
    session.flush()
    return _user(row)


def disabled_users(session: Session, names: Iterable[str]) -> frozenset[str]:
    """Which of ``names`` are disabled (or removed) now."""
    return reads.disabled_users(SessionSQL(session), names)


# -- key bindings -----------------------------------------------------------------------------


def key_owner(session: Session, key_fingerprint: str) -> str | None:
    """The user a public key is bound to, if any."""
    name: str | None = session.execute(
        select(UserRow.name).join(KeyBindingRow, KeyBindingRow.user_id == UserRow.id)
        .where(KeyBindingRow.key_fingerprint == key_fingerprint)).scalar_one_or_none()
    return name


def _valid_certificates_for_key(session: Session, key_fingerprint: str, user_id: int,
                                at: datetime) -> list[IssuedCertificate]:
    return _certificates(
        session, CertificateRow.key_fingerprint == key_fingerprint,
        CertificateRow.user_id == user_id, CertificateRow.kind.in_([IDENTITY, SSH]),
        CertificateRow.status == "valid", CertificateRow.not_after > at)


def bind_key(session: Session, key_fingerprint: str, user: str, at: datetime) -> None:
    """Bind a key to ``user``; ConflictError naming the owner if another user holds a valid
    certificate for it. The key_bindings primary key makes the database refuse a second
    owner even if this check were bypassed."""
    user_row = _user_row(session, user)
    binding = session.execute(
        select(KeyBindingRow).where(KeyBindingRow.key_fingerprint == key_fingerprint)
        .with_for_update()).scalar_one_or_none()
    if binding is None:
        session.add(KeyBindingRow(key_fingerprint=key_fingerprint, user_id=user_row.id,
                                  bound_at=at))
    elif binding.user_id != user_row.id:
        held = _valid_certificates_for_key(session, key_fingerprint, binding.user_id, at)
        if held:
            raise ConflictError(
                f"this public key already belongs to user {held[0].user} (valid "
                f"{held[0].kind} certificate {held[0].serial}); a key identifies one person"
            )
        binding.user_id, binding.bound_at = user_row.id, at
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConflictError("this public key is already bound to another user") from exc


def release_key_if_unused(session: Session, key_fingerprint: str | None, user_id: int,
                          at: datetime) -> None:
    """Drop the key's binding when its owner holds no valid certificate for it any more."""
    if not key_fingerprint or _valid_certificates_for_key(session, key_fingerprint, user_id,
                                                           at):
        return
    binding = session.get(KeyBindingRow, key_fingerprint)
    if binding is not None and binding.user_id == user_id:
        session.delete(binding)
        session.flush()


# -- certificates -----------------------------------------------------------------------------


def _certificate(row: CertificateRow, user: str) -> IssuedCertificate:
    return IssuedCertificate(
        serial=row.serial,
        kind=row.kind,
        user=user,
        holder_serial=row.holder_serial,
        key_fingerprint=row.key_fingerprint,
        subject=row.subject,
        attributes=row.attributes,
        targets=row.targets,
        not_before=row.not_before,
        not_after=row.not_after,
        issued_at=row.issued_at,
        status=row.status,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
        der=row.der,
        user_id=row.user_id,
    )


def add_certificate(
    session: Session,
    *,
    serial: str,
    kind: str,
    user: str,
    der: bytes,
    subject: str,
    not_before: datetime,
    not_after: datetime,
    holder_serial: str | None = None,
    key_fingerprint: str | None = None,
    attributes: dict[str, Any] | None = None,
    targets: list[str] | None = None,
    user_id: int | None = None,
) -> IssuedCertificate:
    """Record an issued certificate; ``user_id`` (when the caller knows it) saves a lookup."""
    if user_id is None:
        user_id = _user_row(session, user).id
    row = CertificateRow(
        serial=serial,
        kind=kind,
        user_id=user_id,
        holder_serial=holder_serial,
        key_fingerprint=key_fingerprint,
        subject=subject,
        attributes=attributes,
        targets=targets,
        der=der,
        not_before=not_before,
        not_after=not_after,
        issued_at=now(),
        status="valid",
    )
    session.add(row)
    mark_changed(session)
    return _certificate(row, user)


_CERTIFICATE_COLUMNS = ("serial", "kind", "user_id", "holder_serial", "key_fingerprint",
                        "subject", "attributes", "targets", "der", "not_before", "not_after",
                        "issued_at", "status", "revoked_at", "revocation_reason")
_INSERT_CERTIFICATE = (f"INSERT INTO certificates ({', '.join(_CERTIFICATE_COLUMNS)}) "
                       f"VALUES ({placeholders(len(_CERTIFICATE_COLUMNS))})")


def add_certificates(
    session: Session, certificates: Sequence[IssuedCertificate]
) -> list[IssuedCertificate]:
    """Record many issued certificates with one executemany (``user_id`` must be set).

    Why not ``add_certificate`` in a loop: the ORM unit of work cost more per AC than signing
    it (bulk ``attr grant``). Times and JSON are written as SQLAlchemy's column types write
    them (``certgate.store.sql``); the ACs of one grant share their times, converted once.
    """
    if not certificates:
        return []
    sql = SessionSQL(session)
    dialect = sql.dialect
    times: dict[int, Any] = {}  # id(datetime) -> parameter; every value lives for the call

    def time(value: datetime | None) -> Any:
        if value is None:
            return None
        found = times.get(id(value))
        if found is None:
            found = times[id(value)] = time_param(value, dialect)
        return found

    sql.run_many(_INSERT_CERTIFICATE, [
        (c.serial, c.kind, c.user_id, c.holder_serial, c.key_fingerprint, c.subject,
         json_param(c.attributes, dialect), json_param(c.targets, dialect), c.der,
         time(c.not_before), time(c.not_after), time(c.issued_at), c.status,
         time(c.revoked_at), c.revocation_reason)
        for c in certificates
    ])
    mark_changed(session)
    return list(certificates)


def _certificates(session: Session, *conditions: Any) -> list[IssuedCertificate]:
    rows = session.execute(
        select(CertificateRow, UserRow.name)
        .join(UserRow, CertificateRow.user_id == UserRow.id)
        .where(*conditions)
        .order_by(CertificateRow.issued_at, CertificateRow.id)
    ).all()
    return [_certificate(row, name) for row, name in rows]


def get_certificate(session: Session, serial: str) -> IssuedCertificate:
    found = _certificates(session, CertificateRow.serial == serial)
    if not found:
        raise NotFoundError(f"no certificate with serial {serial}")
    return found[0]


# The reads every decision makes are plain SQL shared with the access core
# (certgate.store.access_reads), so ``policy check`` runs them without SQLAlchemy.


def find_certificate(session: Session, serial: str) -> IssuedCertificate | None:
    return reads.find_certificate(SessionSQL(session), serial)


def certificates_by_serial(session: Session, serials: Iterable[str]
                           ) -> dict[str, IssuedCertificate]:
    return reads.certificates_by_serial(SessionSQL(session), serials)


def attribute_certificates_for_holders(
    session: Session, holder_serials: Iterable[str], *, unexpired_at: datetime
) -> dict[str, list[IssuedCertificate]]:
    """ACs of many identities at once (the batched re-check after a change)."""
    return reads.attribute_certificates_for_holders(SessionSQL(session), holder_serials,
                                                    unexpired_at=unexpired_at)


def certificates_of(
    session: Session, user: str | None = None, kind: str | None = None
) -> list[IssuedCertificate]:
    conditions: list[Any] = []
    if user is not None:
        conditions.append(CertificateRow.user_id == _user_row(session, user).id)
    if kind is not None:
        conditions.append(CertificateRow.kind == kind)
    return _certificates(session, *conditions)


def current_holder(session: Session, user: str, at: datetime) -> Holder | None:
    """See ``certgate.store.access_reads.current_holder``."""
    return reads.current_holder(SessionSQL(session), user, at)


def current_identity(session: Session, user: str, at: datetime) -> IssuedCertificate | None:
    """The newest identity certificate of ``user`` valid at ``at``, in one query."""
    return reads.current_identity(SessionSQL(session), user, at)


def identities_for_key(session: Session, key_fingerprint: str) -> list[IssuedCertificate]:
    """See ``certgate.store.access_reads.identities_for_key``."""
    return reads.identities_for_key(SessionSQL(session), key_fingerprint)


def ssh_certificates_for_key(session: Session, key_fingerprint: str) -> list[IssuedCertificate]:
    return reads.ssh_certificates_for_key(SessionSQL(session), key_fingerprint)


def attribute_certificates_for_holder(
    session: Session, holder_serial: str, *, unexpired_at: datetime | None = None
) -> list[IssuedCertificate]:
    """ACs bound to an identity; with ``unexpired_at``, only those not yet expired then."""
    return reads.attribute_certificates_for_holder(SessionSQL(session), holder_serial,
                                                   unexpired_at=unexpired_at)


def revoke_certificate(
    session: Session, serial: str, *, reason: str, at: datetime
) -> IssuedCertificate:
    row = session.execute(
        select(CertificateRow).where(CertificateRow.serial == serial).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no certificate with serial {serial}")
    if row.status == "revoked":
        raise ConflictError(f"certificate {serial} was already revoked at {row.revoked_at}")
    row.status, row.revoked_at, row.revocation_reason = "revoked", at, reason
    mark_changed(session)
    session.flush()
    if row.kind in (IDENTITY, SSH):
        release_key_if_unused(session, row.key_fingerprint, row.user_id, at)
    return get_certificate(session, serial)


def revoked_certificates(session: Session, kinds: Sequence[str]) -> list[IssuedCertificate]:
    return _certificates(
        session, CertificateRow.kind.in_(kinds), CertificateRow.status == "revoked"
    )


def revoked_serials(session: Session, kinds: Sequence[str]) -> frozenset[str]:
    rows = session.execute(
        select(CertificateRow.serial).where(
            CertificateRow.kind.in_(kinds), CertificateRow.status == "revoked"
        )
    ).scalars()
    return frozenset(rows)


def next_crl_number(session: Session, name: str) -> int:
    row = session.execute(
        select(CrlCounterRow).where(CrlCounterRow.name == name).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        row = CrlCounterRow(name=name, number=0)
        session.add(row)
    row.number += 1
    session.flush()
    return row.number


# -- VMs --------------------------------------------------------------------------------------


def _vm(row: VMRow) -> VM:
    return VM(row.name, row.console_uri, dict(row.labels or {}), row.created_at, row.keep,
              row.escape)


def add_vm(session: Session, name: str, console_uri: str, labels: dict[str, str], *,
           keep: str | None = None, escape: str | None = None) -> VM:
    if session.execute(select(VMRow.id).where(VMRow.name == name)).first():
        raise ConflictError(f"VM {name} already exists (remove it first to change it)")
    row = VMRow(name=name, console_uri=console_uri, labels=labels, created_at=now(), keep=keep,
                escape=escape)
    session.add(row)
    mark_changed(session)
    session.flush()
    return _vm(row)


def set_vm_console_options(session: Session, name: str, *, keep: str | None,
                           escape: str | None) -> VM:
    """Change how the gateway holds a VM's console (None leaves a setting as it is)."""
    row = session.execute(select(VMRow).where(VMRow.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no VM named {name}")
    if keep is not None:
        row.keep = keep
    if escape is not None:
        row.escape = escape
    mark_changed(session)  # VM rows are cached per change counter (access.snapshot.FleetCache)
    session.flush()
    return _vm(row)


def get_vm(session: Session, name: str) -> VM:
    row = session.execute(select(VMRow).where(VMRow.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no VM named {name}")
    return _vm(row)


def find_vm(session: Session, name: str) -> VM | None:
    return reads.find_vm(SessionSQL(session), name)


def list_vms(session: Session) -> list[VM]:
    return reads.list_vms(SessionSQL(session))


def remove_vm(session: Session, name: str) -> VM:
    row = session.execute(select(VMRow).where(VMRow.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no VM named {name}")
    vm = _vm(row)
    has_nics = session.execute(
        select(func.count()).select_from(VMNicRow).where(VMNicRow.vm_id == row.id)
    ).scalar_one()
    session.delete(row)
    mark_changed(session)
    if has_nics:
        # Its interfaces go with it (cascade): group membership, and so from_group sources
        # and the rendered ruleset, changed too.
        from certgate.store.secgroup_repository import bump_generation

        bump_generation(session)
    return vm


# -- policies ---------------------------------------------------------------------------------


def _policy(row: PolicyVersionRow) -> PolicyVersion:
    return PolicyVersion(
        row.version, row.source, row.source_name, row.fingerprint, row.applied_at, row.applied_by
    )


def add_policy_version(
    session: Session, *, source: str, source_name: str, fingerprint: str, applied_by: str
) -> PolicyVersion:
    latest = session.execute(select(func.max(PolicyVersionRow.version))).scalar() or 0
    row = PolicyVersionRow(
        version=latest + 1,
        source=source,
        source_name=source_name,
        fingerprint=fingerprint,
        applied_at=now(),
        applied_by=applied_by,
    )
    session.add(row)
    mark_changed(session)
    session.flush()
    return _policy(row)


def policy_version(session: Session, version: int) -> PolicyVersion | None:
    row = session.execute(
        select(PolicyVersionRow).where(PolicyVersionRow.version == version)
    ).scalar_one_or_none()
    return _policy(row) if row else None


def current_policy_number(session: Session) -> int:
    """The version in force (0: none applied), without reading its source."""
    return reads.current_policy_number(SessionSQL(session))


def current_policy(session: Session) -> PolicyVersion | None:
    return reads.current_policy(SessionSQL(session))


# -- audit ------------------------------------------------------------------------------------


def change_counter(session: Session) -> int:
    return reads.change_counter(SessionSQL(session))


def audit_entry_count(session: Session) -> int:
    """How many entries the chain holds now (after pruning), from its head row."""
    head = session.get(AuditHeadRow, 1)
    return (head.seq - head.base_seq) if head else 0
