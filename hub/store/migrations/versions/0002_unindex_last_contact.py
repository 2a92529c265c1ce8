"""Drop the indexes on customer.last_inbound_at / last_outbound_at.

Every ingested contact moves last_inbound_at, so its index cost a random
index-page write per contact, and the API's "last contact" filter compares
the later of the two columns, which neither index can serve.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_last_inbound_at")
        batch_op.drop_index("ix_customer_last_outbound_at")


def downgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.create_index("ix_customer_last_outbound_at", ["last_outbound_at"], unique=False)
        batch_op.create_index("ix_customer_last_inbound_at", ["last_inbound_at"], unique=False)
