"""Fence the chain's writer: an epoch bumped by each new writer and checked by every write.

Revision ID: 0006_writer_epoch
Revises: 0005_follower_cursors
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_writer_epoch"
down_revision = "0005_follower_cursors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "hot_chain_status",
        sa.Column("writer_epoch", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("hot_chain_status", "writer_epoch")
