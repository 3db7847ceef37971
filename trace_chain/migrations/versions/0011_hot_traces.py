"""`hot_traces`: internal calls (the one chain schema's `traces`), written by followers with
`traces: true`, keyed by (chain_id, block_number, transaction_index, trace_address) so reorg
deletes and range scans use the key; readable by the query role like the other hot tables.

Revision ID: 0011_hot_traces
Revises: 0010_cold_segments
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_hot_traces"
down_revision = "0010_cold_segments"
branch_labels = None
depends_on = None

ROLE = "trace_query"
WEI = sa.Numeric(38, 0)


def upgrade() -> None:
    # Columns spelled out (not read from chain_schema): a migration is a fixed point in time.
    op.create_table(
        "hot_traces",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.Text(), nullable=False),
        sa.Column("transaction_index", sa.BigInteger(), nullable=False),
        sa.Column("transaction_hash", sa.Text(), nullable=False),
        sa.Column("trace_address", sa.Text(), nullable=False),
        sa.Column("trace_type", sa.Text(), nullable=False),
        sa.Column("call_type", sa.Text()),
        sa.Column("from_address", sa.Text(), nullable=False),
        sa.Column("to_address", sa.Text()),
        sa.Column("value", WEI, nullable=False),
        sa.Column("gas", sa.BigInteger()),
        sa.Column("gas_used", sa.BigInteger()),
        sa.Column("input", sa.Text()),
        sa.Column("output", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("subtraces", sa.BigInteger(), nullable=False),
        sa.Column("created_address", sa.Text()),
        sa.PrimaryKeyConstraint(
            "chain_id", "block_number", "transaction_index", "trace_address", name="pk_hot_traces"
        ),
    )
    op.create_index("ix_hot_traces_hash", "hot_traces", ["chain_id", "transaction_hash"])
    op.create_index(
        "ix_hot_traces_from", "hot_traces", ["chain_id", "from_address", "block_number"]
    )
    op.create_index("ix_hot_traces_to", "hot_traces", ["chain_id", "to_address", "block_number"])
    op.execute(f"GRANT SELECT ON hot_traces TO {ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON hot_traces FROM {ROLE}")
    op.drop_table("hot_traces")
