"""Per-request results packed: request ids, labels and probabilities of every version as
compact bytes instead of JSON lists (a cross-validated version holds one prediction per
labelled request). Existing rows are converted in batches; nothing is lost.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import json

import sqlalchemy as sa
from alembic import op

from core import packing

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 200
COLUMNS = {  # JSON column -> (packed column, pack, unpack)
    "test_ids": ("test_ids_packed", packing.pack_strings, packing.unpack_strings),
    "test_labels": ("test_labels_packed", packing.pack_labels, packing.unpack_labels),
    "test_probabilities": (
        "test_probabilities_packed",
        packing.pack_floats,
        packing.unpack_floats,
    ),
}


def _loaded(value):
    """A JSON column's value as Python (SQLite gives text, PostgreSQL parsed values)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _convert(source: list[str], target: list[str], encode) -> None:
    """Copy every row's `source` columns into `target` columns, `encode`d, in batches."""
    bind = op.get_bind()
    details = sa.table(
        "version_details",
        sa.column("version_id", sa.Integer),
        *(sa.column(name) for name in source + target),
    )
    last = -1
    while True:
        rows = bind.execute(
            sa.select(details.c.version_id, *(details.c[name] for name in source))
            .where(details.c.version_id > last)
            .order_by(details.c.version_id)
            .limit(BATCH)
        ).fetchall()
        if not rows:
            return
        for row in rows:
            values = {t: encode(i, row[1 + i]) for i, t in enumerate(target)}
            bind.execute(details.update().where(details.c.version_id == row[0]).values(**values))
        last = rows[-1][0]


def upgrade() -> None:
    with op.batch_alter_table("version_details") as batch:
        for packed, _, _ in COLUMNS.values():
            batch.add_column(sa.Column(packed, sa.LargeBinary, nullable=True))
    packers = [pack for _, pack, _ in COLUMNS.values()]
    _convert(
        list(COLUMNS),
        [packed for packed, _, _ in COLUMNS.values()],
        lambda i, value: packers[i](_loaded(value) or []),
    )
    with op.batch_alter_table("version_details") as batch:
        for name, (packed, _, _) in COLUMNS.items():
            batch.drop_column(name)
            batch.alter_column(packed, existing_type=sa.LargeBinary, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("version_details") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.JSON, nullable=True))
    unpackers = [unpack for _, _, unpack in COLUMNS.values()]
    _convert(
        [packed for packed, _, _ in COLUMNS.values()],
        list(COLUMNS),
        lambda i, value: json.dumps(unpackers[i](bytes(value))),
    )
    with op.batch_alter_table("version_details") as batch:
        for name, (packed, _, _) in COLUMNS.items():
            batch.drop_column(packed)
            batch.alter_column(name, existing_type=sa.JSON, nullable=False)
