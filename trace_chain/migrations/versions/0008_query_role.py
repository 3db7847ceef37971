"""A role for the query engine that can read the hot chain tables and nothing else
(trace_chain/db.py QUERY_ROLE), created when missing (roles are server-wide).

Revision ID: 0008_query_role
Revises: 0007_one_chain_schema
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008_query_role"
down_revision = "0007_one_chain_schema"
branch_labels = None
depends_on = None

ROLE = "trace_query"
TABLES = ("hot_blocks", "hot_transactions", "hot_logs")


def upgrade() -> None:
    # Roles are server-wide: another database's migration may create it at the same moment.
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') "
        f"THEN CREATE ROLE {ROLE} LOGIN; END IF; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )
    op.execute(
        f"DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {ROLE}', "
        "current_database()); END $$"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"GRANT SELECT ON {', '.join(TABLES)} TO {ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON {', '.join(TABLES)} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
    op.execute(
        f"DO $$ BEGIN EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM {ROLE}', "
        "current_database()); END $$"
    )
