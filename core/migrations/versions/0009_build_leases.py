"""Build leases: a running build's launcher renews `lease_expires_at` every few seconds
(`lease_holder` names it: host, pid, pid namespace; `lease_renewed_at` is its last
renewal). Any process's recovery ends a build whose lease expired, on any host.

Existing rows get no lease (null): they are judged as before, by pid on their own host.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("lease_holder", sa.String(300), nullable=True))
        batch.add_column(sa.Column("lease_renewed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_renewed_at")
        batch.drop_column("lease_holder")
