"""Index the tasks whose reminder is still to be sent: (due_at) where not done and not
reminded. The scheduler's reminder tick asked for due_at <= now through the index on
due_at alone, which walks every task ever due, done and reminded ones included: 33 ms
under the write lock at the bench's 1 M customers (every webhook and screen pop
waited), and growing with the history. This partial index holds only the pending ones.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_reminder_due",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text("done IS 0 AND reminded_at IS NULL"),
            postgresql_where=sa.text("done IS false AND reminded_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index("ix_task_reminder_due")
