"""Integrity and team use: imported flag, dataset name and kind, build logs in the registry,
a registry id, 64-bit artifact sizes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(
            sa.Column("imported", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("data_name", sa.String(300)))
        batch.add_column(sa.Column("data_kind", sa.String(20)))
        batch.alter_column(
            "artifact_size", existing_type=sa.Integer, type_=sa.BigInteger, existing_nullable=True
        )
    op.create_table(
        "build_logs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_build_logs_version_id", "build_logs", ["version_id"])
    meta = op.create_table(
        "registry_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(meta, [{"key": "id", "value": uuid.uuid4().hex[:16]}])
    # Versions imported before this migration said so in their provenance only.
    versions = sa.table(
        "model_versions", sa.column("imported", sa.Boolean), sa.column("provenance", sa.JSON)
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.execute(
            sa.text(
                "UPDATE model_versions SET imported = 1 "
                "WHERE json_extract(provenance, '$.imported') IS NOT NULL"
            )
        )
    else:
        bind.execute(
            versions.update()
            .where(sa.text("(provenance::jsonb) ? 'imported'"))
            .values(imported=True)
        )


def downgrade() -> None:
    op.drop_table("registry_meta")
    op.drop_index("ix_build_logs_version_id", "build_logs")
    op.drop_table("build_logs")
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column(
            "artifact_size", existing_type=sa.BigInteger, type_=sa.Integer, existing_nullable=True
        )
        for column in ("data_kind", "data_name", "imported"):
            batch.drop_column(column)
