"""Access core: the change counter, key bindings (one owner per key), user disable/remove.

Revision ID: 0002_access_core
Revises: 0005_console_keeper
Create Date: 2026-11-28 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_access_core"
down_revision = "0005_console_keeper"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_changes",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO store_changes (id, counter) VALUES (1, 0)")
    op.create_table(
        "key_bindings",
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("key_fingerprint"),
    )
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    # Existing keys belong to the user of their oldest unrevoked identity certificate; a key
    # that a later user was also given (the bug this revision fixes) stays with the first.
    op.execute(
        "INSERT INTO key_bindings (key_fingerprint, user_id, bound_at) "
        "SELECT c.key_fingerprint, c.user_id, c.issued_at FROM certificates c "
        "WHERE c.kind = 'identity' AND c.status = 'valid' AND c.key_fingerprint IS NOT NULL "
        "AND c.id = (SELECT MIN(o.id) FROM certificates o WHERE o.kind = 'identity' "
        "AND o.status = 'valid' AND o.key_fingerprint = c.key_fingerprint)"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("removed_at")
        batch_op.drop_column("disabled_at")
    op.drop_table("key_bindings")
    op.drop_table("store_changes")
