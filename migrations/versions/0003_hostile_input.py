"""Hostile input: audit_events text widths enforced alike on SQLite and PostgreSQL.

PostgreSQL refuses a value longer than its VARCHAR; SQLite stored it. A CHECK constraint per
bounded column makes both databases refuse the same values (the application fits every value
to its column first, see certgate.audit.chain.bounded), so tests on SQLite see what production
on PostgreSQL would.

Revision ID: 0003_hostile_input
Revises: 0004_security_groups
"""

from __future__ import annotations

from alembic import op

revision = "0003_hostile_input"
down_revision = "0004_security_groups"
branch_labels = None
depends_on = None

WIDTHS = {
    "event_type": 64,
    "actor": 128,
    "outcome": 16,
    "user_name": 64,
    "vm": 64,
    "serial": 48,
    "source": 64,
    "session_id": 36,
}


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        for column, width in WIDTHS.items():
            batch_op.create_check_constraint(
                f"ck_audit_events_{column}_width", f"length({column}) <= {width}"
            )


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        for column in WIDTHS:
            batch_op.drop_constraint(f"ck_audit_events_{column}_width", type_="check")
