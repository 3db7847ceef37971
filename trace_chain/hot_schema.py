"""The data-plane hot tables (SQLAlchemy Core): the chain tip in Postgres, keyed by
(chain_id, block_number) so continuity checks, range scans and range deletes use the key. Their
columns are the one chain schema's (trace_chain/chain_schema.py)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from trace_chain import chain_schema

metadata = sa.MetaData()

_TYPES = {
    "int64": sa.BigInteger,
    "text": sa.Text,
    "wei": lambda: sa.Numeric(38, 0),  # wei, exact (chain_schema: DECIMAL(38, 0))
    "bool": sa.Boolean,
}


def _columns(dataset: str) -> list[sa.Column]:
    """The dataset's canonical columns (trace_chain/chain_schema.py) as table columns."""
    return [
        sa.Column(c.name, _TYPES[c.kind](), nullable=c.nullable)
        for c in chain_schema.COLUMNS[dataset]
    ]


hot_blocks = sa.Table(
    "hot_blocks",
    metadata,
    *_columns("blocks"),
    sa.PrimaryKeyConstraint("chain_id", "block_number", name="pk_hot_blocks"),
    sa.UniqueConstraint("chain_id", "block_hash", name="uq_hot_blocks_hash"),
)

hot_transactions = sa.Table(
    "hot_transactions",
    metadata,
    *_columns("transactions"),
    sa.PrimaryKeyConstraint("chain_id", "block_number", "transaction_index", name="pk_hot_txs"),
    sa.Index("ix_hot_txs_hash", "chain_id", "transaction_hash"),
    sa.Index("ix_hot_txs_from", "chain_id", "from_address", "block_number"),
    sa.Index("ix_hot_txs_to", "chain_id", "to_address", "block_number"),
)

hot_logs = sa.Table(
    "hot_logs",
    metadata,
    *_columns("logs"),
    sa.PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_hot_logs"),
    sa.Index("ix_hot_logs_address", "chain_id", "address", "block_number"),
    sa.Index("ix_hot_logs_topic0", "chain_id", "topic0", "block_number"),
)

# Written only by followers with `traces: true` (trace_operators/block_follower.py); keyed like
# the others by (chain_id, block_number, ...) so reorg deletes and range scans use the key.
hot_traces = sa.Table(
    "hot_traces",
    metadata,
    *_columns("traces"),
    sa.PrimaryKeyConstraint(
        "chain_id", "block_number", "transaction_index", "trace_address", name="pk_hot_traces"
    ),
    sa.Index("ix_hot_traces_hash", "chain_id", "transaction_hash"),
    sa.Index("ix_hot_traces_from", "chain_id", "from_address", "block_number"),
    sa.Index("ix_hot_traces_to", "chain_id", "to_address", "block_number"),
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
TRACE_COLUMNS = [c.name for c in hot_traces.columns]
