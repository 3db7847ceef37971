"""Remember which orgs' followers wrote a chain's hot rows, so one org cannot reset another's.

Revision ID: 0004_hot_writer_orgs
Revises: 0003_follower_emitted_upto
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_hot_writer_orgs"
down_revision = "0003_follower_emitted_upto"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "hot_chain_status",
        sa.Column(
            "writer_org_ids",
            postgresql.ARRAY(sa.BigInteger()),
            nullable=False,
            server_default="{}",
        ),
    )


def downgrade() -> None:
    op.drop_column("hot_chain_status", "writer_org_ids")
