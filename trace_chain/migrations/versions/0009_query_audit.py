"""The query audit (trace_chain/query/audit.py): one row per query, its SQL as a hash only.

Revision ID: 0009_query_audit
Revises: 0008_query_role
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_query_audit"
down_revision = "0008_query_role"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "query_audit",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger()),
        sa.Column("task_id", sa.BigInteger()),
        sa.Column("sql_sha256", sa.Text(), nullable=False),
        sa.Column("relations", postgresql.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("code", sa.Text()),
        sa.Column("rows", sa.BigInteger()),
        sa.Column("truncated", sa.Boolean()),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_query_audit_org_at", "query_audit", ["org_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_query_audit_org_at", table_name="query_audit")
    op.drop_table("query_audit")
