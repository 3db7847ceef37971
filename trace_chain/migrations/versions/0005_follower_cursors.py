"""Every follower of a chain keeps its own announcement cursor, and every rewrite of a chain's
hot rows is logged, so followers of several orgs can share one chain's rows.

Revision ID: 0005_follower_cursors
Revises: 0004_hot_writer_orgs
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_follower_cursors"
down_revision = "0004_hot_writer_orgs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("hot_chain_status", "writer_org_ids", new_column_name="follower_org_ids")
    # The one per-chain cursor cannot be attributed to a follower: each re-announces from its
    # start (events are wake-ups, delivered at least once).
    op.drop_column("hot_chain_status", "emitted_upto")
    op.create_table(
        "hot_followers",
        sa.Column("chain_id", sa.BigInteger(), primary_key=True),
        sa.Column("follower", sa.Text(), primary_key=True),
        sa.Column("emitted_upto", sa.BigInteger()),
        sa.Column("rewrites_seen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_table(
        "hot_rewrites",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("range_start", sa.BigInteger(), nullable=False),
        sa.Column("range_end", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_index("ix_hot_rewrites_chain", "hot_rewrites", ["chain_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_hot_rewrites_chain", table_name="hot_rewrites")
    op.drop_table("hot_rewrites")
    op.drop_table("hot_followers")
    op.add_column("hot_chain_status", sa.Column("emitted_upto", sa.BigInteger(), nullable=True))
    op.alter_column("hot_chain_status", "follower_org_ids", new_column_name="writer_org_ids")
