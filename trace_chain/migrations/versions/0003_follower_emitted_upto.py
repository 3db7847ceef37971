"""Remember how far the follower announced its blocks, so a restart announces the rest.

Revision ID: 0003_follower_emitted_upto
Revises: 0002_hot_tables
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_follower_emitted_upto"
down_revision = "0002_hot_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hot_chain_status", sa.Column("emitted_upto", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("hot_chain_status", "emitted_upto")
