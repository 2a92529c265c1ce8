"""Calls remember the team a PBX queue routed them to; users get a phone number (E.164)
that a PBX's answeringNumber is matched against.

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-05 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_app_user_phone"), ["phone"], unique=False)
    with op.batch_alter_table("phone_call", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route_team_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_phone_call_route_team_id_team", "team", ["route_team_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("phone_call", schema=None) as batch_op:
        batch_op.drop_constraint("fk_phone_call_route_team_id_team", type_="foreignkey")
        batch_op.drop_column("route_team_id")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_user_phone"))
        batch_op.drop_column("phone")
