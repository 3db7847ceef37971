"""Baseline of the data DB: a key/value table describing the data plane itself.

Revision ID: 0001_baseline
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_plane_info",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("data_plane_info")
