"""The store reads of a decision, as SQL text: one set of statements for every caller.

The access core (the gateway's logins and re-checks, ``policy check``, the review site) and
the repository functions of the same names (``certgate.store.repositories``) all run these,
through a ``certgate.store.sql.SQL`` bound to one transaction. Nothing here imports
SQLAlchemy: see ``certgate.store.sql`` for why.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from certgate.errors import NotFoundError
from certgate.store.records import (
    ATTRIBUTE,
    IDENTITY,
    SSH,
    VM,
    Holder,
    IssuedCertificate,
    PolicyVersion,
)
from certgate.store.sql import (
    SQL,
    bytes_value,
    json_value,
    placeholders,
    required_time,
    time_param,
    time_value,
)

_BATCH = 500
"""Values per ``IN (...)`` list: far below every driver's parameter limit."""

_CERTIFICATES = (
    "SELECT c.serial, c.kind, u.name, c.holder_serial, c.key_fingerprint, c.subject, "
    "c.attributes, c.targets, c.not_before, c.not_after, c.issued_at, c.status, "
    "c.revoked_at, c.revocation_reason, c.der, c.user_id "
    "FROM certificates AS c JOIN users AS u ON c.user_id = u.id WHERE "
)
_IN_ISSUE_ORDER = " ORDER BY c.issued_at, c.id"


def _certificate(row: tuple[Any, ...]) -> IssuedCertificate:
    (serial, kind, user, holder_serial, key_fingerprint, subject, attributes, targets,
     not_before, not_after, issued_at, status, revoked_at, revocation_reason, der,
     user_id) = row
    return IssuedCertificate(
        serial=serial, kind=kind, user=user, holder_serial=holder_serial,
        key_fingerprint=key_fingerprint, subject=subject, attributes=json_value(attributes),
        targets=json_value(targets), not_before=required_time(not_before),
        not_after=required_time(not_after), issued_at=required_time(issued_at),
        status=status, revoked_at=time_value(revoked_at),
        revocation_reason=revocation_reason, der=bytes_value(der), user_id=user_id,
    )


def _certificates(sql: SQL, condition: str, params: Iterable[Any]) -> list[IssuedCertificate]:
    return [_certificate(row)
            for row in sql.rows(_CERTIFICATES + condition + _IN_ISSUE_ORDER, tuple(params))]


def _batches(values: Iterable[str]) -> Iterable[list[str]]:
    wanted = sorted(set(values))
    for start in range(0, len(wanted), _BATCH):
        yield wanted[start:start + _BATCH]


# -- certificates ------------------------------------------------------------------------------


def find_certificate(sql: SQL, serial: str) -> IssuedCertificate | None:
    found = _certificates(sql, "c.serial = ?", (serial,))
    return found[0] if found else None


def certificates_by_serial(sql: SQL, serials: Iterable[str]) -> dict[str, IssuedCertificate]:
    found: dict[str, IssuedCertificate] = {}
    for batch in _batches(serials):
        for cert in _certificates(sql, f"c.serial IN ({placeholders(len(batch))})", batch):
            found[cert.serial] = cert
    return found


_NEWEST_VALID_IDENTITY = (
    "u.name = ? AND c.kind = ? AND c.status = 'valid' AND c.not_before <= ? "
    "AND c.not_after > ? ORDER BY c.not_before DESC, c.id DESC LIMIT 1"
)
_CURRENT_IDENTITY = _CERTIFICATES + _NEWEST_VALID_IDENTITY
_CURRENT_HOLDER = (
    "SELECT c.serial, c.der, c.user_id FROM certificates AS c JOIN users AS u "
    "ON c.user_id = u.id WHERE " + _NEWEST_VALID_IDENTITY
)


def _newest_valid_identity(sql: SQL, query: str, user: str,
                           at: datetime) -> tuple[Any, ...] | None:
    """The row ``query`` selects for ``user``'s newest identity valid at ``at``; None when
    there is none, NotFoundError when there is no such user (its own error)."""
    when = time_param(at, sql.dialect)
    rows = sql.rows(query, (user, IDENTITY, when, when))
    if rows:
        return rows[0]
    if not sql.rows("SELECT id FROM users WHERE name = ?", (user,)):
        raise NotFoundError(f"no user named {user}")
    return None


def current_identity(sql: SQL, user: str, at: datetime) -> IssuedCertificate | None:
    """The newest identity certificate of ``user`` valid at ``at``, in one query."""
    row = _newest_valid_identity(sql, _CURRENT_IDENTITY, user, at)
    return None if row is None else _certificate(row)


def current_holder(sql: SQL, user: str, at: datetime) -> Holder | None:
    """``current_identity`` reduced to what binding an AC to it needs (``attr grant`` reads
    it once per grant; the rest of the row would only be decoded to be dropped)."""
    row = _newest_valid_identity(sql, _CURRENT_HOLDER, user, at)
    if row is None:
        return None
    serial, der, user_id = row
    return Holder(serial, bytes_value(der), user_id)


def identities_for_key(sql: SQL, key_fingerprint: str) -> list[IssuedCertificate]:
    """The identity certificates issued for a key to the user the key is bound to; when no
    one holds it any more, every identity ever issued for it (all revoked or expired), so a
    refusal can say which and why."""
    owner = sql.rows("SELECT user_id FROM key_bindings WHERE key_fingerprint = ?",
                     (key_fingerprint,))
    if owner:
        return _certificates(sql, "c.kind = ? AND c.key_fingerprint = ? AND c.user_id = ?",
                             (IDENTITY, key_fingerprint, owner[0][0]))
    return _certificates(sql, "c.kind = ? AND c.key_fingerprint = ?", (IDENTITY, key_fingerprint))


def ssh_certificates_for_key(sql: SQL, key_fingerprint: str) -> list[IssuedCertificate]:
    return _certificates(sql, "c.kind = ? AND c.key_fingerprint = ?", (SSH, key_fingerprint))


def attribute_certificates_for_holder(
    sql: SQL, holder_serial: str, *, unexpired_at: datetime | None = None
) -> list[IssuedCertificate]:
    """ACs bound to an identity; with ``unexpired_at``, only those not yet expired then.

    The gateway asks on every login and every live re-check: filtering in SQL keeps that cost
    flat however many short-lived ACs a user has collected over the years.
    """
    if unexpired_at is None:
        return _certificates(sql, "c.kind = ? AND c.holder_serial = ?",
                             (ATTRIBUTE, holder_serial))
    return _certificates(sql, "c.kind = ? AND c.holder_serial = ? AND c.not_after > ?",
                         (ATTRIBUTE, holder_serial, time_param(unexpired_at, sql.dialect)))


def attribute_certificates_for_holders(
    sql: SQL, holder_serials: Iterable[str], *, unexpired_at: datetime
) -> dict[str, list[IssuedCertificate]]:
    """ACs of many identities at once (the batched re-check after a change)."""
    wanted = sorted(set(holder_serials))
    found: dict[str, list[IssuedCertificate]] = {serial: [] for serial in wanted}
    at = time_param(unexpired_at, sql.dialect)
    for batch in _batches(wanted):
        condition = (f"c.kind = ? AND c.holder_serial IN ({placeholders(len(batch))}) "
                     "AND c.not_after > ?")
        for cert in _certificates(sql, condition, (ATTRIBUTE, *batch, at)):
            found[cert.holder_serial or ""].append(cert)
    return found


# -- users ---------------------------------------------------------------------------------------


def disabled_users(sql: SQL, names: Iterable[str]) -> frozenset[str]:
    """Which of ``names`` are disabled (or removed) now."""
    found: set[str] = set()
    for batch in _batches(names):
        found.update(name for (name,) in sql.rows(
            f"SELECT name FROM users WHERE name IN ({placeholders(len(batch))}) "
            "AND disabled_at IS NOT NULL", batch))
    return frozenset(found)


# -- VMs ----------------------------------------------------------------------------------------

_VM_COLUMNS = 'SELECT name, console_uri, labels, created_at, keep, "escape" FROM vms'


def _vm(row: tuple[Any, ...]) -> VM:
    name, console_uri, labels, created_at, keep, escape = row
    return VM(name, console_uri, dict(json_value(labels) or {}), required_time(created_at),
              keep, escape)


def find_vm(sql: SQL, name: str) -> VM | None:
    rows = sql.rows(_VM_COLUMNS + " WHERE name = ?", (name,))
    return _vm(rows[0]) if rows else None


def list_vms(sql: SQL) -> list[VM]:
    return [_vm(row) for row in sql.rows(_VM_COLUMNS + " ORDER BY name")]


# -- policy and change counters -----------------------------------------------------------------


def current_policy_number(sql: SQL) -> int:
    """The version in force (0: none applied), without reading its source."""
    rows = sql.rows("SELECT max(version) FROM policy_versions")
    return int(rows[0][0] or 0) if rows else 0


def current_policy(sql: SQL) -> PolicyVersion | None:
    rows = sql.rows("SELECT version, source, source_name, fingerprint, applied_at, applied_by "
                    "FROM policy_versions ORDER BY version DESC LIMIT 1")
    if not rows:
        return None
    version, source, source_name, fingerprint, applied_at, applied_by = rows[0]
    return PolicyVersion(version, source, source_name, fingerprint, required_time(applied_at),
                         applied_by)


def change_counter(sql: SQL) -> int:
    """The store's change counter (``certgate.store.changes``)."""
    rows = sql.rows("SELECT counter FROM store_changes WHERE id = 1")
    return int(rows[0][0] or 0) if rows else 0


def security_groups_generation(sql: SQL) -> int:
    """The change counter of the security groups (0 before the first change)."""
    rows = sql.rows("SELECT generation FROM security_group_state WHERE id = 1")
    return int(rows[0][0]) if rows else 0
