"""The query audit, in the data DB beside the data it is about: who ran which query (its hash,
never its text) over which relations, how many rows came back, how long it took, and how it
ended. Written for every query, refused ones included."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from trace_chain.hot_schema import metadata

query_audit = sa.Table(
    "query_audit",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("org_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger),  # a person's query
    sa.Column("task_id", sa.BigInteger),  # a task's query (capability token)
    sa.Column("sql_sha256", sa.Text, nullable=False),
    sa.Column("relations", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("outcome", sa.Text, nullable=False),  # ok | refused | failed
    sa.Column("code", sa.Text),  # the refusal's or failure's code
    sa.Column("rows", sa.BigInteger),
    sa.Column("truncated", sa.Boolean),
    sa.Column("duration_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_query_audit_org_at", "org_id", "at"),
)


def query_audit_record(engine: Engine, **row: Any) -> None:
    with engine.begin() as conn:
        conn.execute(query_audit.insert().values(**row))
