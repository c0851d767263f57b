"""Security groups: groups, their rules, VM interfaces, their memberships, a change counter.

Revision ID: 0004_security_groups
Revises: 0006_review_web
Create Date: 2026-11-28 07:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_security_groups"
down_revision = "0006_review_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "security_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("restrict_egress", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("port_first", sa.Integer(), nullable=True),
        sa.Column("port_last", sa.Integer(), nullable=True),
        sa.Column("cidr", sa.String(length=64), nullable=True),
        sa.Column("remote_group_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["security_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["remote_group_id"], ["security_groups.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("security_group_rules", schema=None) as batch_op:
        batch_op.create_index("ix_security_group_rules_group", ["group_id"], unique=False)
    op.create_table(
        "vm_nics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("ifname", sa.String(length=16), nullable=False),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["vm_id"], ["vms.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ifname"),
    )
    op.create_table(
        "vm_nic_groups",
        sa.Column("nic_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["security_groups.id"]),
        sa.ForeignKeyConstraint(["nic_id"], ["vm_nics.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("nic_id", "group_id"),
    )


    op.create_table(
        "security_group_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("security_group_state")
    op.drop_table("vm_nic_groups")
    op.drop_table("vm_nics")
    with op.batch_alter_table("security_group_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_security_group_rules_group")
    op.drop_table("security_group_rules")
    op.drop_table("security_groups")
