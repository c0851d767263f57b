"""Queries over the store that return domain objects, so callers never hold ORM rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certgate.errors import ConflictError, NotFoundError
from certgate.store.changes import flushed_connection, mark_changed, read_counter
from certgate.store.prepared import PreparedStatement
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

IDENTITY = "identity"
ATTRIBUTE = "attribute"
SSH = "ssh"


@dataclass(frozen=True)
class User:
    name: str
    email: str | None
    created_at: datetime
    disabled_at: datetime | None = None
    removed_at: datetime | None = None

    @property
    def state(self) -> str:
        """active, disabled or removed."""
        if self.removed_at is not None:
            return "removed"
        return "disabled" if self.disabled_at is not None else "active"


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    kind: str
    user: str
    holder_serial: str | None
    key_fingerprint: str | None
    subject: str
    attributes: dict[str, Any] | None
    targets: list[str] | None
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    status: str
    revoked_at: datetime | None
    revocation_reason: str | None
    der: bytes
    user_id: int = 0

    def state_at(self, at: datetime) -> str:
        """revoked, expired, not-yet-valid or valid: what an operator wants to see."""
        if self.status == "revoked":
            return "revoked"
        if at >= self.not_after:
            return "expired"
        if at < self.not_before:
            return "not-yet-valid"
        return "valid"

    def summary(self, at: datetime) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "kind": self.kind,
            "user": self.user,
            "holder_serial": self.holder_serial,
            "subject": self.subject,
            "attributes": self.attributes,
            "targets": self.targets,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "issued_at": self.issued_at.isoformat(),
            "state": self.state_at(at),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
        }


@dataclass(frozen=True)
class VM:
    name: str
    console_uri: str
    labels: dict[str, str]
    created_at: datetime
    keep: str | None = None
    escape: str | None = None


@dataclass(frozen=True)
class PolicyVersion:
    version: int
    source: str
    source_name: str
    fingerprint: str
    applied_at: datetime
    applied_by: str


def now() -> datetime:
    return datetime.now(UTC)


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


_DISABLED_AMONG = select(UserRow.__table__.c.name).where(
    UserRow.__table__.c.name.in_(bindparam("names", expanding=True)),
    UserRow.__table__.c.disabled_at.is_not(None))


def disabled_users(session: Session, names: Iterable[str]) -> frozenset[str]:
    """Which of ``names`` are disabled (or removed) now."""
    wanted = sorted(set(names))
    found: set[str] = set()
    connection = flushed_connection(session)
    for start in range(0, len(wanted), 500):
        found.update(connection.execute(
            _DISABLED_AMONG, {"names": wanted[start:start + 500]}).scalars())
    return frozenset(found)


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


def add_certificates(
    session: Session, certificates: Sequence[IssuedCertificate]
) -> list[IssuedCertificate]:
    """Record many issued certificates with one Core executemany (``user_id`` must be set).

    Why not ``add_certificate`` in a loop: the ORM unit of work cost more per AC than signing
    it (bulk ``attr grant``).
    """
    if not certificates:
        return []
    _INSERT_CERTIFICATE.execute_many(
        session,
        [{
            "serial": c.serial, "kind": c.kind, "user_id": c.user_id,
            "holder_serial": c.holder_serial, "key_fingerprint": c.key_fingerprint,
            "subject": c.subject, "attributes": c.attributes, "targets": c.targets, "der": c.der,
            "not_before": c.not_before, "not_after": c.not_after, "issued_at": c.issued_at,
            "status": c.status, "revoked_at": c.revoked_at,
            "revocation_reason": c.revocation_reason,
        } for c in certificates],
    )
    mark_changed(session)
    return list(certificates)


_INSERT_CERTIFICATE = PreparedStatement(
    insert(CertificateRow.__table__),  # type: ignore[arg-type]
    parameters=[c.name for c in CertificateRow.__table__.columns if c.name != "id"])


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


# The reads every decision and every grant makes are built once: constructing a SELECT cost
# more than running it (~1 ms against ~0.2 ms on this machine); they run on the driver
# (certgate.store.prepared), skipping the ORM and SQLAlchemy's per-statement machinery.
_CERTIFICATE_COLUMNS = select(
    *CertificateRow.__table__.columns, UserRow.__table__.c.name.label("user_name")
).join_from(CertificateRow.__table__, UserRow.__table__,
            CertificateRow.__table__.c.user_id == UserRow.__table__.c.id)
_C = CertificateRow.__table__.c
_FIND_CERTIFICATE = PreparedStatement(
    _CERTIFICATE_COLUMNS.where(_C.serial == bindparam("serial")))


def _current_identity_of(columns: Select[Any]) -> PreparedStatement:
    return PreparedStatement(
        columns
        .where(UserRow.__table__.c.name == bindparam("user"), _C.kind == IDENTITY,
               _C.status == "valid", _C.not_before <= bindparam("at"),
               _C.not_after > bindparam("at"))
        .order_by(_C.not_before.desc(), _C.id.desc())
        .limit(1)
    )


_CURRENT_IDENTITY = _current_identity_of(_CERTIFICATE_COLUMNS)
# What issuing an AC needs of the holder, without decoding the rest of the row.
_CURRENT_HOLDER = _current_identity_of(
    select(_C.serial, _C.der, _C.user_id).join_from(
        CertificateRow.__table__, UserRow.__table__, _C.user_id == UserRow.__table__.c.id))
_HOLDER_ACS = PreparedStatement(
    _CERTIFICATE_COLUMNS
    .where(_C.kind == ATTRIBUTE, _C.holder_serial == bindparam("holder"))
    .order_by(_C.issued_at, _C.id))
_HOLDER_ACS_UNEXPIRED = PreparedStatement(
    _CERTIFICATE_COLUMNS
    .where(_C.kind == ATTRIBUTE, _C.holder_serial == bindparam("holder"),
           _C.not_after > bindparam("at"))
    .order_by(_C.issued_at, _C.id)
)
_CERTIFICATE_KEYS = tuple(str(column.key) for column in _CERTIFICATE_COLUMNS.selected_columns)


def _read_certificates(session: Session, statement: PreparedStatement,
                       parameters: dict[str, Any]) -> list[IssuedCertificate]:
    found = []
    for values in statement.rows(session, parameters):
        row = dict(zip(_CERTIFICATE_KEYS, values, strict=True))
        del row["id"]
        row["user"] = row.pop("user_name")
        found.append(IssuedCertificate(**row))
    return found


def find_certificate(session: Session, serial: str) -> IssuedCertificate | None:
    found = _read_certificates(session, _FIND_CERTIFICATE, {"serial": serial})
    return found[0] if found else None


def certificates_by_serial(session: Session, serials: Iterable[str]
                           ) -> dict[str, IssuedCertificate]:
    wanted = sorted(set(serials))
    found: dict[str, IssuedCertificate] = {}
    for start in range(0, len(wanted), 500):
        for cert in _certificates(session, CertificateRow.serial.in_(wanted[start:start + 500])):
            found[cert.serial] = cert
    return found


def attribute_certificates_for_holders(
    session: Session, holder_serials: Iterable[str], *, unexpired_at: datetime
) -> dict[str, list[IssuedCertificate]]:
    """ACs of many identities at once (the batched re-check after a change)."""
    wanted = sorted(set(holder_serials))
    found: dict[str, list[IssuedCertificate]] = {serial: [] for serial in wanted}
    for start in range(0, len(wanted), 500):
        for cert in _certificates(session, CertificateRow.kind == ATTRIBUTE,
                                  CertificateRow.holder_serial.in_(wanted[start:start + 500]),
                                  CertificateRow.not_after > unexpired_at):
            found[cert.holder_serial or ""].append(cert)
    return found


def certificates_of(
    session: Session, user: str | None = None, kind: str | None = None
) -> list[IssuedCertificate]:
    conditions: list[Any] = []
    if user is not None:
        conditions.append(CertificateRow.user_id == _user_row(session, user).id)
    if kind is not None:
        conditions.append(CertificateRow.kind == kind)
    return _certificates(session, *conditions)


def current_identity(session: Session, user: str, at: datetime) -> IssuedCertificate | None:
    """The newest identity certificate of ``user`` valid at ``at``, in one query."""
    found = _read_certificates(session, _CURRENT_IDENTITY, {"user": user, "at": at})
    if not found:
        _user_row(session, user)  # an unknown user is its own error
        return None
    return found[0]


@dataclass(frozen=True)
class Holder:
    """The identity certificate an attribute certificate is bound to."""

    serial: str
    der: bytes
    user_id: int


def current_holder(session: Session, user: str, at: datetime) -> Holder | None:
    """``current_identity`` reduced to what binding an AC to it needs (the ``attr grant``
    path reads it once per grant)."""
    found = _CURRENT_HOLDER.rows(session, {"user": user, "at": at})
    if not found:
        _user_row(session, user)  # an unknown user is its own error
        return None
    serial, der, user_id = found[0]
    return Holder(serial, bytes(der), user_id)


def identities_for_key(session: Session, key_fingerprint: str) -> list[IssuedCertificate]:
    """The identity certificates issued for a key to the user the key is bound to; when no
    one holds it any more, every identity ever issued for it (all revoked or expired), so a
    refusal can say which and why."""
    owner = session.execute(select(KeyBindingRow.user_id).where(
        KeyBindingRow.key_fingerprint == key_fingerprint)).scalar_one_or_none()
    conditions = [CertificateRow.kind == IDENTITY,
                  CertificateRow.key_fingerprint == key_fingerprint]
    if owner is not None:
        conditions.append(CertificateRow.user_id == owner)
    return _certificates(session, *conditions)


def ssh_certificates_for_key(session: Session, key_fingerprint: str) -> list[IssuedCertificate]:
    return _certificates(
        session,
        CertificateRow.kind == SSH,
        CertificateRow.key_fingerprint == key_fingerprint,
    )


def attribute_certificates_for_holder(
    session: Session, holder_serial: str, *, unexpired_at: datetime | None = None
) -> list[IssuedCertificate]:
    """ACs bound to an identity; with ``unexpired_at``, only those not yet expired then.

    The gateway asks on every login and every live re-check: filtering in SQL keeps that cost
    flat however many short-lived ACs a user has collected over the years.
    """
    if unexpired_at is None:
        return _read_certificates(session, _HOLDER_ACS, {"holder": holder_serial})
    return _read_certificates(session, _HOLDER_ACS_UNEXPIRED,
                              {"holder": holder_serial, "at": unexpired_at})


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


_FIND_VM = select(VMRow).where(VMRow.name == bindparam("name"))


def find_vm(session: Session, name: str) -> VM | None:
    row = session.execute(_FIND_VM, {"name": name}).scalar_one_or_none()
    return _vm(row) if row else None


_VM_COLUMNS = VMRow.__table__.c
_LIST_VMS = select(_VM_COLUMNS.name, _VM_COLUMNS.console_uri, _VM_COLUMNS.labels,
                   _VM_COLUMNS.created_at, _VM_COLUMNS.keep,
                   _VM_COLUMNS.escape).order_by(_VM_COLUMNS.name)


def list_vms(session: Session) -> list[VM]:
    # Core rows: listing a 10k-VM fleet through ORM objects cost ~3x as much.
    return [VM(name, console_uri, dict(labels or {}), created_at, keep, escape)
            for name, console_uri, labels, created_at, keep, escape
            in flushed_connection(session).execute(_LIST_VMS)]


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


_CURRENT_POLICY_NUMBER = select(func.max(PolicyVersionRow.__table__.c.version))


def current_policy_number(session: Session) -> int:
    """The version in force (0: none applied), without reading its source."""
    return flushed_connection(session).execute(_CURRENT_POLICY_NUMBER).scalar() or 0


def current_policy(session: Session) -> PolicyVersion | None:
    row = session.execute(
        select(PolicyVersionRow).order_by(PolicyVersionRow.version.desc()).limit(1)
    ).scalar_one_or_none()
    return _policy(row) if row else None


# -- audit ------------------------------------------------------------------------------------


def change_counter(session: Session) -> int:
    return read_counter(session)


def audit_entry_count(session: Session) -> int:
    """How many entries the chain holds now (after pruning), from its head row."""
    head = session.get(AuditHeadRow, 1)
    return (head.seq - head.base_seq) if head else 0
