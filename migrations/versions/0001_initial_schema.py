"""Initial schema: users, certificates, CRL counters, VMs, policies, audit chain, sessions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 01:50:21.750829
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signer_serial", sa.String(length=48), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("user_name", sa.String(length=64), nullable=True),
        sa.Column("vm", sa.String(length=64), nullable=True),
        sa.Column("serial", sa.String(length=48), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_session", ["session_id"], unique=False)
        batch_op.create_index("ix_audit_events_ts", ["ts"], unique=False)
        batch_op.create_index("ix_audit_events_user", ["user_name"], unique=False)
        batch_op.create_index("ix_audit_events_vm", ["vm"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("base_seq", sa.BigInteger(), nullable=False),
        sa.Column("base_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("vm", sa.String(length=64), nullable=False),
        sa.Column("identity_serial", sa.String(length=48), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("privileges", sa.JSON(), nullable=False),
        sa.Column("gateway_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("recording_path", sa.Text(), nullable=True),
        sa.Column("recording_sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_console_sessions_status", ["status"], unique=False)

    op.create_table(
        "crl_counters",
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "vms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("console_uri", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=48), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("holder_serial", sa.String(length=48), nullable=True),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("targets", sa.JSON(), nullable=True),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("serial"),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index("ix_certificates_holder_serial", ["holder_serial"], unique=False)
        batch_op.create_index("ix_certificates_key_fingerprint", ["key_fingerprint"], unique=False)
        batch_op.create_index("ix_certificates_user_kind", ["user_id", "kind"], unique=False)

    # The audit chain starts from a fixed genesis hash; every append locks this one row.
    op.bulk_insert(
        sa.table(
            "audit_head",
            sa.column("id", sa.Integer()),
            sa.column("seq", sa.BigInteger()),
            sa.column("entry_hash", sa.String()),
            sa.column("base_seq", sa.BigInteger()),
            sa.column("base_hash", sa.String()),
        ),
        [{"id": 1, "seq": 0, "entry_hash": GENESIS_HASH, "base_seq": 0, "base_hash": GENESIS_HASH}],
    )


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_certificates_user_kind")
        batch_op.drop_index("ix_certificates_key_fingerprint")
        batch_op.drop_index("ix_certificates_holder_serial")

    op.drop_table("certificates")
    op.drop_table("vms")
    op.drop_table("users")
    op.drop_table("policy_versions")
    op.drop_table("crl_counters")
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_console_sessions_status")

    op.drop_table("console_sessions")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_vm")
        batch_op.drop_index("ix_audit_events_user")
        batch_op.drop_index("ix_audit_events_ts")
        batch_op.drop_index("ix_audit_events_session")

    op.drop_table("audit_events")
    op.drop_table("audit_checkpoints")
