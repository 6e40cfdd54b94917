"""Indexes for what `list` and the Versions page filter and sort by: a model's versions
without archived ones, newest first; by recipe; by tag; by dataset (references, gc).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_model_versions_listing": ("model_versions", ["model_id", "archived", "version"]),
    "ix_model_versions_recipe": ("model_versions", ["model_id", "recipe"]),
    "ix_model_versions_data_sha256": ("model_versions", ["data_sha256"]),
    "ix_tags_name": ("tags", ["name"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table)
