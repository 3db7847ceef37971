"""The data DB's Alembic migrations build exactly the tables declared on hot_schema's metadata
(the hot tables, the query audit and the compacted cold segments)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from trace_chain import cold_segments  # noqa: F401 - declared on the same metadata
from trace_chain.hot_schema import metadata
from trace_chain.query import audit  # noqa: F401 - the query audit is declared on that metadata

UNDECLARED_TABLES = {"alembic_version", "data_plane_info"}


def test_migrations_match_the_declared_hot_schema(hot_engine):
    with hot_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_server_default": True})
        differences = [
            diff
            for diff in compare_metadata(context, metadata)
            # Alembic's version table and the baseline's key/value table are not declared.
            if not (diff[0] == "remove_table" and diff[1].name in UNDECLARED_TABLES)
        ]
    assert differences == []
