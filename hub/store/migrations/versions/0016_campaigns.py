"""Campaigns: campaign, its steps and runs, follow-up task marks; campaign columns on the outbox.

Revision ID: 0016
Revises: 0015

The outbox is rebuilt on SQLite (new constraints); it keeps AUTOINCREMENT (see 0004).
Create Date: 2026-12-05 13:23:39.786075
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.models

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"], unique=False
    )
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("mailbox", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("schedule_kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("schedule_at", hub.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("cron", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("rate_per_second", sa.Float(), nullable=True),
        sa.Column("failure_threshold", sa.Float(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", hub.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hub.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["app_user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segment.id"],
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaign_status"), ["status"], unique=False)

    op.create_table(
        "campaign_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("expanded_through", sa.Integer(), nullable=False),
        sa.Column("audience", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.JSON(), nullable=False),
        sa.Column("started_at", hub.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", hub.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("campaign_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_run_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "campaign_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("delay_days", sa.Float(), nullable=False),
        sa.Column("task_title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["message_template.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("campaign_step", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_step_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "campaign_task_mark",
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_id"], ["campaign_step.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("step_id", "customer_id"),
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reminded_at", hub.store.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table(
        "outbox", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("campaign_step_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("campaign_run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("html", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("unsubscribe", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(batch_op.f("ix_outbox_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_unique_constraint(
            "uq_outbox_campaign_once", ["campaign_run_id", "campaign_step_id", "customer_id"]
        )
        batch_op.create_foreign_key(
            "fk_outbox_campaign_run", "campaign_run", ["campaign_run_id"], ["id"]
        )
        batch_op.create_foreign_key(
            "fk_outbox_campaign_step", "campaign_step", ["campaign_step_id"], ["id"]
        )
        batch_op.create_foreign_key("fk_outbox_campaign", "campaign", ["campaign_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table(
        "outbox", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        for fk in ("fk_outbox_campaign_run", "fk_outbox_campaign_step", "fk_outbox_campaign"):
            batch_op.drop_constraint(fk, type_="foreignkey")
        batch_op.drop_constraint("uq_outbox_campaign_once", type_="unique")
        batch_op.drop_index(batch_op.f("ix_outbox_campaign_id"))
        batch_op.drop_column("uncertain")
        batch_op.drop_column("unsubscribe")
        batch_op.drop_column("html")
        batch_op.drop_column("campaign_run_id")
        batch_op.drop_column("campaign_step_id")
        batch_op.drop_column("campaign_id")

    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("reminded_at")
    op.drop_table("campaign_task_mark")
    with op.batch_alter_table("campaign_step", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_step_campaign_id"))

    op.drop_table("campaign_step")
    with op.batch_alter_table("campaign_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_run_campaign_id"))

    op.drop_table("campaign_run")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_status"))

    op.drop_table("campaign")
    op.drop_index("ix_apscheduler_jobs_next_run_time", table_name="apscheduler_jobs")
    op.drop_table("apscheduler_jobs")
