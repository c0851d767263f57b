"""Console keeper: per-VM keep mode and escape menu prefix.

Revision ID: 0005_console_keeper
Revises: 0003_hostile_input
Create Date: 2026-11-28 07:30:00

Both columns are nullable: NULL means the default (``always`` for unix:/tcp: consoles,
``on-demand`` otherwise; the ``^Ec`` escape), so existing VMs need no data migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_console_keeper"
down_revision = "0003_hostile_input"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("keep", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("escape", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("escape")
        batch.drop_column("keep")
