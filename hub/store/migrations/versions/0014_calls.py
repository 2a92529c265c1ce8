"""Calls: each phone call's state by provider and call id; a PBX id per user.

Revision ID: 0014
Revises: 0013 (main's head when written; the merger re-chains)
Create Date: 2026-12-05 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.models

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pbx_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_app_user_pbx_id"), ["pbx_id"], unique=False)
    op.create_table(
        "phone_call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("call_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("direction", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("from_number", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("to_number", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("interaction_id", sa.Integer(), nullable=True),
        sa.Column("ringing", sa.JSON(), nullable=False),
        sa.Column("answered_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("cause", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("started_at", hub.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answered_at", hub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", hub.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["interaction_id"], ["interaction.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "call_id", name="uq_phone_call_provider_call"),
    )


def downgrade() -> None:
    op.drop_table("phone_call")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_user_pbx_id"))
        batch_op.drop_column("pbx_id")
