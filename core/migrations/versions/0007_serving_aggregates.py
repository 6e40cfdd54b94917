"""What the prediction service served: one row per minute, version, host and serving
process (requests, errors, latency quantiles and histogram, out-of-range share, mean score).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serving_aggregates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("aliases", sa.String(300), nullable=True),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("out_of_range", sa.Integer, nullable=False),
        sa.Column("score_sum", sa.Float, nullable=False),
        sa.Column("latency_p50_ms", sa.Float, nullable=True),
        sa.Column("latency_p99_ms", sa.Float, nullable=True),
        sa.Column("latency_max_ms", sa.Float, nullable=True),
        sa.Column("latency_buckets", sa.JSON, nullable=True),
        sa.UniqueConstraint("version_id", "minute", "host", "pid", name="uq_serving_minute"),
    )
    op.create_index("ix_serving_aggregates_minute", "serving_aggregates", ["minute"])
    op.create_index("ix_serving_aggregates_version", "serving_aggregates", ["version_id", "minute"])


def downgrade() -> None:
    op.drop_table("serving_aggregates")
