"""The data-plane hot tables (SQLAlchemy Core): the chain tip in Postgres, keyed by
(chain_id, block_number) so continuity checks, range scans and range deletes use the key."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

UINT256 = sa.Numeric(78, 0)  # wei values and fees exceed 64 bits

hot_blocks = sa.Table(
    "hot_blocks",
    metadata,
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("block_number", sa.BigInteger, nullable=False),
    sa.Column("block_hash", sa.Text, nullable=False),
    sa.Column("parent_hash", sa.Text, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),  # unix seconds, as the chain says
    sa.Column("miner", sa.Text),
    sa.Column("gas_used", sa.BigInteger),
    sa.Column("gas_limit", sa.BigInteger),
    sa.Column("base_fee_per_gas", UINT256),
    sa.Column("transaction_count", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("extra_data", sa.Text),
    sa.PrimaryKeyConstraint("chain_id", "block_number", name="pk_hot_blocks"),
    sa.UniqueConstraint("chain_id", "block_hash", name="uq_hot_blocks_hash"),
)

hot_transactions = sa.Table(
    "hot_transactions",
    metadata,
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("block_number", sa.BigInteger, nullable=False),
    sa.Column("transaction_index", sa.Integer, nullable=False),
    sa.Column("transaction_hash", sa.Text, nullable=False),
    sa.Column("block_hash", sa.Text, nullable=False),
    sa.Column("from_address", sa.Text, nullable=False),
    sa.Column("to_address", sa.Text),  # NULL for contract creation
    sa.Column("value", UINT256, nullable=False),
    sa.Column("gas", sa.BigInteger),
    sa.Column("gas_price", UINT256),
    sa.Column("max_fee_per_gas", UINT256),
    sa.Column("max_priority_fee_per_gas", UINT256),
    sa.Column("input", sa.Text),
    sa.Column("nonce", sa.BigInteger),
    sa.Column("transaction_type", sa.Integer),
    sa.Column("status", sa.Integer),  # receipt: 1 success, 0 reverted
    sa.Column("gas_used", sa.BigInteger),
    sa.Column("effective_gas_price", UINT256),
    sa.Column("contract_address", sa.Text),
    sa.PrimaryKeyConstraint("chain_id", "block_number", "transaction_index", name="pk_hot_txs"),
    sa.Index("ix_hot_txs_hash", "chain_id", "transaction_hash"),
    sa.Index("ix_hot_txs_from", "chain_id", "from_address", "block_number"),
    sa.Index("ix_hot_txs_to", "chain_id", "to_address", "block_number"),
)

hot_logs = sa.Table(
    "hot_logs",
    metadata,
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("block_number", sa.BigInteger, nullable=False),
    sa.Column("log_index", sa.Integer, nullable=False),
    sa.Column("transaction_index", sa.Integer, nullable=False),
    sa.Column("transaction_hash", sa.Text, nullable=False),
    sa.Column("block_hash", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("topic0", sa.Text),
    sa.Column("topic1", sa.Text),
    sa.Column("topic2", sa.Text),
    sa.Column("topic3", sa.Text),
    sa.Column("data", sa.Text),
    sa.PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_hot_logs"),
    sa.Index("ix_hot_logs_address", "chain_id", "address", "block_number"),
    sa.Index("ix_hot_logs_topic0", "chain_id", "topic0", "block_number"),
)

# One row per chain: what the follower last saw, for lag and reorg observability.
hot_chain_status = sa.Table(
    "hot_chain_status",
    metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True),
    sa.Column("head_block", sa.BigInteger),
    sa.Column("tip_block", sa.BigInteger),
    sa.Column("reorg_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_reorg_depth", sa.Integer),
    sa.Column("last_reorg_at", sa.DateTime(timezone=True)),
    sa.Column("reset_marker", sa.Text),  # which reset_outputs bootstrap already ran
    # Bumped by each follower that becomes the chain's writer; every write checks it under a
    # row lock, so a writer that lost its lock unnoticed can never write beside the new one.
    sa.Column("writer_epoch", sa.BigInteger, nullable=False, server_default="0"),
    # Orgs whose followers write or announce this chain's rows: reset_outputs may wipe only
    # rows no other org relies on.
    sa.Column(
        "follower_org_ids", postgresql.ARRAY(sa.BigInteger), nullable=False, server_default="{}"
    ),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

# One row per follower job of a chain ("{org_id}/{dag}/{job}"): how far it announced blocks as
# events of its own dataset, and the last rewrite of the chain (hot_rewrites.id) it has handled.
hot_followers = sa.Table(
    "hot_followers",
    metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True),
    sa.Column("follower", sa.Text, primary_key=True),
    sa.Column("emitted_upto", sa.BigInteger),  # blocks below this were announced
    sa.Column("rewrites_seen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

# Every time a chain's hot rows from some block on were deleted to be rewritten (a reorg, a
# reset), written in the same transaction as the delete: each follower of the chain, writer or
# not, invalidates what it announced of that range.
hot_rewrites = sa.Table(
    "hot_rewrites",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("range_start", sa.BigInteger, nullable=False),
    sa.Column("range_end", sa.BigInteger, nullable=False),  # end-exclusive: the old tip + 1
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Index("ix_hot_rewrites_chain", "chain_id", "id"),
)

BLOCK_COLUMNS = [c.name for c in hot_blocks.columns]
TRANSACTION_COLUMNS = [c.name for c in hot_transactions.columns]
LOG_COLUMNS = [c.name for c in hot_logs.columns]
