"""Review site: one-time sign-in links and browser sessions; indexes for listing sessions.

Revision ID: 0006_review_web
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_review_web"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("identity_serial", sa.String(length=48), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_review_tokens_expires", "review_tokens", ["expires_at"])
    op.create_index("ix_console_sessions_started", "console_sessions", ["started_at", "id"])
    op.create_index("ix_console_sessions_user_started", "console_sessions",
                    ["user_name", "started_at"])
    op.create_index("ix_console_sessions_vm_started", "console_sessions", ["vm", "started_at"])
    op.create_index("ix_console_sessions_ended", "console_sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_ended", table_name="console_sessions")
    op.drop_index("ix_console_sessions_vm_started", table_name="console_sessions")
    op.drop_index("ix_console_sessions_user_started", table_name="console_sessions")
    op.drop_index("ix_console_sessions_started", table_name="console_sessions")
    op.drop_index("ix_review_tokens_expires", table_name="review_tokens")
    op.drop_table("review_tokens")
