"""Compacted cold partitions recorded beside the hot rows they replace
(trace_chain/cold_segments.py), readable by the query role.

Revision ID: 0010_cold_segments
Revises: 0009_query_audit
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_cold_segments"
down_revision = "0009_query_audit"
branch_labels = None
depends_on = None

ROLE = "trace_query"


def upgrade() -> None:
    op.create_table(
        "cold_segments",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("range_start", sa.BigInteger(), nullable=False),
        sa.Column("range_end", sa.BigInteger(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("files", postgresql.JSONB(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("last_block_hash", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default="live"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("replaced_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_cold_segments_live",
        "cold_segments",
        ["chain_id", "dataset", "state", "range_start"],
    )
    op.execute(f"GRANT SELECT ON cold_segments TO {ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON cold_segments FROM {ROLE}")
    op.drop_index("ix_cold_segments_live", table_name="cold_segments")
    op.drop_table("cold_segments")
