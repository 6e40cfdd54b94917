"""Operating points: each version records how its threshold was chosen (`threshold_policy`)
and warnings about its decisions (`flags`, e.g. single-class).

Existing versions keep their threshold; their policy reads `fixed:T (before operating
points)`, also written into their metrics. Rates whose denominator is zero were stored as
0 (precision 0/0, recall with no positives, F1 with nothing to score): they become null,
recomputed from the stored confusion matrix. Done in batches; nothing else changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 500
LEGACY = "fixed:{:g} (before operating points)"


def _loaded(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def undefined_rates(metrics: dict) -> dict:
    """Metrics with 0/0 precision, recall and F1 as null and the policy label added."""
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, dict):
        tp, fp, fn = (matrix.get(k, 0) for k in ("tp", "fp", "fn"))
        for key, denominator in (
            ("precision", tp + fp),
            ("recall", tp + fn),
            ("f1", 2 * tp + fp + fn),
        ):
            if denominator == 0 and key in metrics:
                metrics[key] = None
    return metrics


def flags(metrics: dict) -> list:
    matrix = metrics.get("confusion_matrix")
    if not isinstance(matrix, dict):
        return []
    flagged = matrix.get("tp", 0) + matrix.get("fp", 0)
    passed = matrix.get("tn", 0) + matrix.get("fn", 0)
    return ["single-class"] if flagged == 0 or passed == 0 else []


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("threshold_policy", sa.String(100), nullable=True))
        batch.add_column(sa.Column("flags", sa.JSON, nullable=True))
    bind = op.get_bind()
    versions = sa.table(
        "model_versions",
        sa.column("id", sa.Integer),
        sa.column("threshold", sa.Float),
        sa.column("metrics", sa.JSON),
        sa.column("threshold_policy", sa.String),
        sa.column("flags", sa.JSON),
    )
    last = -1
    while True:
        rows = bind.execute(
            sa.select(versions.c.id, versions.c.threshold, versions.c.metrics)
            .where(versions.c.id > last)
            .order_by(versions.c.id)
            .limit(BATCH)
        ).fetchall()
        if not rows:
            return
        for version_id, threshold, raw in rows:
            label = LEGACY.format(0.5 if threshold is None else threshold)
            values = {"threshold_policy": label, "flags": []}
            metrics = _loaded(raw)
            if isinstance(metrics, dict) and metrics:
                metrics = undefined_rates(metrics)
                metrics.setdefault("threshold_policy", label)
                values |= {"metrics": metrics, "flags": flags(metrics)}
            bind.execute(versions.update().where(versions.c.id == version_id).values(**values))
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("flags")
        batch.drop_column("threshold_policy")
