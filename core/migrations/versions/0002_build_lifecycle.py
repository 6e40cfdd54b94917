"""Build lifecycle: worker, cancellation, live log and reproduction result per version.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("worker_pid", sa.Integer))
        batch.add_column(sa.Column("worker_host", sa.String(255)))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("log_path", sa.Text))
        batch.add_column(sa.Column("reproduction", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        for column in ("reproduction", "log_path", "cancel_requested", "worker_host", "worker_pid"):
            batch.drop_column(column)
