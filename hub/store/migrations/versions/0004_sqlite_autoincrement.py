"""Never reuse ids on SQLite: customer, conversation, interaction and task become AUTOINCREMENT.

Without it SQLite gives a deleted row's id to the next insert, so an id an
API client, an export or an audit event holds could come to mean another
person. PostgreSQL sequences never reuse ids: nothing to do there.

The tables are rebuilt (batch mode); the migration connection has foreign
keys off (SQLite's default), so dropping the old table cascades nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("customer", "conversation", "interaction", "task")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
