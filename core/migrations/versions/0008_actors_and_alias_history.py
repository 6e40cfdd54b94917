"""Who did what: versions record who queued them (`created_by`) and who last archived or
restored them (`archived_by`, `archived_at`); every alias move is kept in
`alias_history` (alias, version number, action, actor, time), and every other change to a
version (queued, cancel, tag, untag, note, archive, restore) in `version_events`.

Existing versions keep every value; their actor is unknown (null). Each existing alias
gets one `recorded` history row at its last update, so `history` starts from today's
state.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("created_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("archived_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_alias_history_alias", "alias_history", ["model_id", "alias", "id"])
    op.create_table(
        "version_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("detail", sa.String(300), nullable=True),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_version_events_version_id", "version_events", ["version_id"])
    op.execute(
        "INSERT INTO alias_history (model_id, alias, version, action, actor, at) "
        "SELECT a.model_id, a.name, v.version, 'recorded', NULL, a.updated_at "
        "FROM aliases a JOIN model_versions v ON v.id = a.version_id "
        "ORDER BY a.updated_at, a.id"
    )


def downgrade() -> None:
    op.drop_table("version_events")
    op.drop_table("alias_history")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("archived_at")
        batch.drop_column("archived_by")
        batch.drop_column("created_by")
