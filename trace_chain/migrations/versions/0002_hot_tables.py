"""Hot chain tables (hot_blocks, hot_transactions, hot_logs) and per-chain follower status.

Generated from trace_chain/hot_schema.py with Alembic autogenerate, then frozen here: a
migration must not change when the live schema module changes later.

Revision ID: 0002_hot_tables
Revises: 0001_baseline
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_hot_tables"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hot_blocks",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.Text(), nullable=False),
        sa.Column("parent_hash", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("miner", sa.Text(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("gas_limit", sa.BigInteger(), nullable=True),
        sa.Column("base_fee_per_gas", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("transaction_count", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("extra_data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "block_number", name="pk_hot_blocks"),
        sa.UniqueConstraint("chain_id", "block_hash", name="uq_hot_blocks_hash"),
    )
    op.create_table(
        "hot_chain_status",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("head_block", sa.BigInteger(), nullable=True),
        sa.Column("tip_block", sa.BigInteger(), nullable=True),
        sa.Column("reorg_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_reorg_depth", sa.Integer(), nullable=True),
        sa.Column("last_reorg_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reset_marker", sa.Text(), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.PrimaryKeyConstraint("chain_id"),
    )
    op.create_table(
        "hot_logs",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("transaction_index", sa.Integer(), nullable=False),
        sa.Column("transaction_hash", sa.Text(), nullable=False),
        sa.Column("block_hash", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("topic0", sa.Text(), nullable=True),
        sa.Column("topic1", sa.Text(), nullable=True),
        sa.Column("topic2", sa.Text(), nullable=True),
        sa.Column("topic3", sa.Text(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_hot_logs"),
    )
    op.create_index(
        "ix_hot_logs_address", "hot_logs", ["chain_id", "address", "block_number"], unique=False
    )
    op.create_index(
        "ix_hot_logs_topic0", "hot_logs", ["chain_id", "topic0", "block_number"], unique=False
    )
    op.create_table(
        "hot_transactions",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("transaction_index", sa.Integer(), nullable=False),
        sa.Column("transaction_hash", sa.Text(), nullable=False),
        sa.Column("block_hash", sa.Text(), nullable=False),
        sa.Column("from_address", sa.Text(), nullable=False),
        sa.Column("to_address", sa.Text(), nullable=True),
        sa.Column("value", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("gas", sa.BigInteger(), nullable=True),
        sa.Column("gas_price", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("max_fee_per_gas", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("max_priority_fee_per_gas", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("transaction_type", sa.Integer(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("effective_gas_price", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("contract_address", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "block_number", "transaction_index", name="pk_hot_txs"),
    )
    op.create_index(
        "ix_hot_txs_from",
        "hot_transactions",
        ["chain_id", "from_address", "block_number"],
        unique=False,
    )
    op.create_index(
        "ix_hot_txs_hash", "hot_transactions", ["chain_id", "transaction_hash"], unique=False
    )
    op.create_index(
        "ix_hot_txs_to",
        "hot_transactions",
        ["chain_id", "to_address", "block_number"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_hot_txs_to", table_name="hot_transactions")
    op.drop_index("ix_hot_txs_hash", table_name="hot_transactions")
    op.drop_index("ix_hot_txs_from", table_name="hot_transactions")
    op.drop_table("hot_transactions")
    op.drop_index("ix_hot_logs_topic0", table_name="hot_logs")
    op.drop_index("ix_hot_logs_address", table_name="hot_logs")
    op.drop_table("hot_logs")
    op.drop_table("hot_chain_status")
    op.drop_table("hot_blocks")
