"""Index due outbox rows by (status, channel, next_attempt_at, id), replacing
(status, next_attempt_at): a dispatcher claims per channel in that order, and
with the old index SQLite scanned and sorted every queued row for each claim
(24 ms at 100,000 queued campaign messages, growing with the queue). And by
(channel, claimed_at): the hourly windows (outbox.max_per_hour) count the rows
claimed in the last hour at every claim. And by (campaign_run_id, status): the
campaign scheduler's tick counts a run's failed rows and looks for rows still to
send, which scanned the whole outbox (with 100,000 rows queued and a tick of
0.1 s, the campaign's own sending dropped from ~190 to ~75 messages/s).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 17:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")
        batch_op.create_index(
            "ix_outbox_due", ["status", "channel", "next_attempt_at", "id"], unique=False
        )
        batch_op.create_index("ix_outbox_claimed", ["channel", "claimed_at"], unique=False)
        batch_op.create_index("ix_outbox_run_status", ["campaign_run_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_run_status")
        batch_op.drop_index("ix_outbox_claimed")
        batch_op.drop_index("ix_outbox_due")
        batch_op.create_index("ix_outbox_due", ["status", "next_attempt_at"], unique=False)
