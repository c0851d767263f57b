"""The database schema: one module, read by the application and by Alembic.

Serial numbers are stored as lowercase hex text (they are up to 159 bits, wider than any SQL
integer). Times are stored timezone-aware and always handed back as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set while the user is disabled: every login is refused, live sessions end."""
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set by ``user rm``: every certificate was revoked; the row stays for the history."""


class KeyBindingRow(Base):
    """Which user a public key belongs to: one owner per key, enforced by the primary key.

    Written when an identity or OpenSSH certificate is issued for the key; handed to another
    user only once the owner holds no unrevoked, unexpired certificate for it.
    """

    __tablename__ = "key_bindings"

    key_fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoreChangesRow(Base):
    """The change counter (one row): bumped by every commit that may change access."""

    __tablename__ = "store_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    counter: Mapped[int] = mapped_column(BigInteger)


class CertificateRow(Base):
    """An issued identity certificate, attribute certificate or OpenSSH user certificate."""

    __tablename__ = "certificates"
    __table_args__ = (
        Index("ix_certificates_user_kind", "user_id", "kind"),
        Index("ix_certificates_key_fingerprint", "key_fingerprint"),
        Index("ix_certificates_holder_serial", "holder_serial"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(48), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # identity | attribute | ssh
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    holder_serial: Mapped[str | None] = mapped_column(String(48))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    targets: Mapped[list[str] | None] = mapped_column(JSON)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="valid")  # valid | revoked
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))


class CrlCounterRow(Base):
    """Monotonic CRL numbers, one counter per list (identity, attribute)."""

    __tablename__ = "crl_counters"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger)


class VMRow(Base):
    __tablename__ = "vms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    console_uri: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    keep: Mapped[str | None] = mapped_column(String(16))  # always | on-demand; None: default
    escape: Mapped[str | None] = mapped_column(String(8))  # escape menu prefix; None: ^Ec


class PolicyVersionRow(Base):
    """Every applied policy file, kept whole; the highest version is in force."""

    __tablename__ = "policy_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(Text)
    source_name: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_by: Mapped[str] = mapped_column(String(128))


AUDIT_TEXT_COLUMNS = {
    "event_type": 64,
    "actor": 128,
    "outcome": 16,
    "user_name": 64,
    "vm": 64,
    "serial": 48,
    "source": 64,
    "session_id": 36,
}
"""The bounded text columns of ``audit_events``; certgate.audit.chain fits values to them."""


def audit_width_checks() -> list[CheckConstraint]:
    """SQLite ignores VARCHAR lengths; these make it refuse what PostgreSQL refuses."""
    return [
        CheckConstraint(f"length({column}) <= {width}", name=f"ck_audit_events_{column}_width")
        for column, width in AUDIT_TEXT_COLUMNS.items()
    ]


class AuditEventRow(Base):
    """One link of the audit hash chain; see certgate.audit.chain for the encoding."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_ts", "ts"),
        Index("ix_audit_events_user", "user_name"),
        Index("ix_audit_events_vm", "vm"),
        Index("ix_audit_events_session", "session_id"),
        *audit_width_checks(),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str | None] = mapped_column(String(16))
    user_name: Mapped[str | None] = mapped_column(String(64))
    vm: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[str | None] = mapped_column(String(48))
    source: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(36))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The single row every append locks, so concurrent writers can never fork the chain.

    ``base_seq``/``base_hash`` describe where the retained chain starts after pruning.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    base_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    base_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    """A signature over the chain head at some point, so that cutting the tail is detectable."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    signer_serial: Mapped[str] = mapped_column(String(48))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class ConsoleSessionRow(Base):
    """A console session through the gateway; ``status`` is live, ended or abnormal."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        Index("ix_console_sessions_status", "status"),
        # The review site lists newest first, filtered by user or VM (keyset pages).
        Index("ix_console_sessions_started", "started_at", "id"),
        Index("ix_console_sessions_user_started", "user_name", "started_at"),
        Index("ix_console_sessions_vm_started", "vm", "started_at"),
        Index("ix_console_sessions_ended", "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))
    vm: Mapped[str] = mapped_column(String(64))
    identity_serial: Mapped[str] = mapped_column(String(48))
    source: Mapped[str | None] = mapped_column(String(64))
    privileges: Mapped[list[str]] = mapped_column(JSON)
    gateway_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    recording_path: Mapped[str | None] = mapped_column(Text)
    recording_sha256: Mapped[str | None] = mapped_column(String(64))


class ReviewTokenRow(Base):
    """A one-time sign-in link or a signed-in browser session of the review site.

    Only the SHA-256 of the secret is stored: a copy of the database signs nobody in.
    ``kind`` is ``link`` (redeemable once, minutes) or ``session`` (a cookie, hours);
    both are bound to the identity certificate they were issued for.
    """

    __tablename__ = "review_tokens"
    __table_args__ = (Index("ix_review_tokens_expires", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_name: Mapped[str] = mapped_column(String(64))
    identity_serial: Mapped[str] = mapped_column(String(48))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str | None] = mapped_column(String(64))


class SecurityGroupRow(Base):
    """A security group: a named whitelist (see certgate.secgroups.model)."""

    __tablename__ = "security_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    restrict_egress: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SecurityRuleRow(Base):
    """One rule of a group; the peer is ``cidr`` or ``remote_group_id``, never both."""

    __tablename__ = "security_group_rules"
    __table_args__ = (Index("ix_security_group_rules_group", "group_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))  # ingress | egress
    protocol: Mapped[str] = mapped_column(String(8))  # tcp | udp | icmp | any
    port_first: Mapped[int | None] = mapped_column(Integer)
    port_last: Mapped[int | None] = mapped_column(Integer)
    cidr: Mapped[str | None] = mapped_column(String(64))
    remote_group_id: Mapped[int | None] = mapped_column(ForeignKey("security_groups.id"))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VMNicRow(Base):
    """A VM's interface as the host names it (tap/vif/veth) and the addresses it owns."""

    __tablename__ = "vm_nics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    ifname: Mapped[str] = mapped_column(String(16), unique=True)
    addresses: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VMNicGroupRow(Base):
    """A NIC's membership of a group; ``position`` keeps the order the groups were given in."""

    __tablename__ = "vm_nic_groups"

    nic_id: Mapped[int] = mapped_column(
        ForeignKey("vm_nics.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class SecurityGroupStateRow(Base):
    """One row: bumped by every security-group change, so readers (the gateway's policy
    cache) can tell in one primary-key lookup whether the groups changed."""

    __tablename__ = "security_group_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)
