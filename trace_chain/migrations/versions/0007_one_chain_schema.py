"""The hot tables take the one chain schema (trace_chain/chain_schema.py): the columns, names
and types Cryo backfills and compacted files share. Columns a Cryo backfill cannot give
(blocks' gas_limit and transaction_count, transactions' effective_gas_price and
contract_address) go; `gas` is `gas_limit`; the receipt status is `success`; wei amounts are
NUMERIC(38, 0); positions are BIGINT.

Revision ID: 0007_one_chain_schema
Revises: 0006_writer_epoch
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_one_chain_schema"
down_revision = "0006_writer_epoch"
branch_labels = None
depends_on = None

WEI = sa.Numeric(38, 0)
OLD_WEI = sa.Numeric(78, 0)


def upgrade() -> None:
    op.drop_column("hot_blocks", "gas_limit")
    op.drop_column("hot_blocks", "transaction_count")
    op.alter_column("hot_blocks", "base_fee_per_gas", type_=WEI, existing_type=OLD_WEI)

    op.alter_column("hot_transactions", "gas", new_column_name="gas_limit")
    op.alter_column(
        "hot_transactions",
        "status",
        new_column_name="success",
        type_=sa.Boolean(),
        existing_type=sa.Integer(),
        postgresql_using="status = 1",
    )
    op.drop_column("hot_transactions", "effective_gas_price")
    op.drop_column("hot_transactions", "contract_address")
    for column in ("value", "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"):
        op.alter_column("hot_transactions", column, type_=WEI, existing_type=OLD_WEI)
    for column in ("transaction_index", "transaction_type"):
        op.alter_column(
            "hot_transactions", column, type_=sa.BigInteger(), existing_type=sa.Integer()
        )

    for column in ("transaction_index", "log_index"):
        op.alter_column("hot_logs", column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    for column in ("transaction_index", "log_index"):
        op.alter_column("hot_logs", column, type_=sa.Integer(), existing_type=sa.BigInteger())
    for column in ("transaction_index", "transaction_type"):
        op.alter_column(
            "hot_transactions", column, type_=sa.Integer(), existing_type=sa.BigInteger()
        )
    for column in ("value", "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"):
        op.alter_column("hot_transactions", column, type_=OLD_WEI, existing_type=WEI)
    op.add_column("hot_transactions", sa.Column("contract_address", sa.Text()))
    op.add_column("hot_transactions", sa.Column("effective_gas_price", OLD_WEI))
    op.alter_column(
        "hot_transactions",
        "success",
        new_column_name="status",
        type_=sa.Integer(),
        existing_type=sa.Boolean(),
        postgresql_using="CASE WHEN success THEN 1 WHEN NOT success THEN 0 END",
    )
    op.alter_column("hot_transactions", "gas_limit", new_column_name="gas")
    op.alter_column("hot_blocks", "base_fee_per_gas", type_=OLD_WEI, existing_type=WEI)
    op.add_column(
        "hot_blocks",
        sa.Column("transaction_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("hot_blocks", sa.Column("gas_limit", sa.BigInteger()))
