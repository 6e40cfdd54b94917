"""Initial registry: models, versions, details, aliases, tags.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("stage", sa.String(40)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("recipe", sa.String(100), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("builder", sa.String(20), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("data_path", sa.Text, nullable=False),
        sa.Column("data_sha256", sa.String(64), nullable=False),
        sa.Column("split_seed", sa.Integer, nullable=False),
        sa.Column("split_test_size", sa.Float, nullable=False),
        sa.Column("split_hash", sa.String(64)),
        sa.Column("metrics", sa.JSON),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("artifact_sha256", sa.String(64)),
        sa.Column("artifact_size", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("log_tail", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("model_id", "version", name="uq_model_version"),
    )
    op.create_index("ix_model_versions_model_id", "model_versions", ["model_id"])
    op.create_index("ix_model_versions_status", "model_versions", ["status"])
    op.create_index("ix_model_versions_fingerprint", "model_versions", ["fingerprint"])
    op.create_index("ix_model_versions_artifact_sha256", "model_versions", ["artifact_sha256"])
    op.create_table(
        "version_details",
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("curves", sa.JSON, nullable=False),
        sa.Column("test_ids", sa.JSON, nullable=False),
        sa.Column("test_labels", sa.JSON, nullable=False),
        sa.Column("test_probabilities", sa.JSON, nullable=False),
    )
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("model_id", "name", name="uq_alias_name"),
    )
    op.create_table(
        "tags",
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(100), primary_key=True),
    )


def downgrade() -> None:
    for table in ("tags", "aliases", "version_details", "model_versions", "models"):
        op.drop_table(table)
