"""Index identity claims by (kind, value): an agent's screen pop of another team's
customer asks for a claim on the number, which otherwise scans every claim.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 14:03:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("identity_claim", schema=None) as batch_op:
        batch_op.create_index("ix_identity_claim_kind_value", ["kind", "value"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("identity_claim", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_claim_kind_value")
