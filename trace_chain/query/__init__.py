"""The query engine: the SQL gate (`gate`), the DuckDB sandbox (`open_sandbox`), the unified
relations over hot and cold chain data (`relations`, `coverage`) and running one query
(`engine.query_execute`).

User SQL runs only as `gate(sql, relations=sandbox.relations).sql`, on a sandbox opened for that
one query, inside `sandbox.guard(seconds)`. See docs/query.md.
"""

from trace_chain.query.errors import (
    QueryError,
    QueryFailed,
    QueryRefused,
    QueryTimedOut,
    SandboxSetupFailed,
)
from trace_chain.query.gate import GatedQuery, gate, sql_sha256
from trace_chain.query.hardening import (
    PostgresSource,
    S3Access,
    Sandbox,
    SandboxLimits,
    engine_errors,
    extension_path,
    open_sandbox,
    redact,
    time_limit,
)

__all__ = [
    "GatedQuery",
    "PostgresSource",
    "QueryError",
    "QueryFailed",
    "QueryRefused",
    "QueryTimedOut",
    "S3Access",
    "Sandbox",
    "SandboxLimits",
    "SandboxSetupFailed",
    "engine_errors",
    "extension_path",
    "gate",
    "open_sandbox",
    "redact",
    "sql_sha256",
    "time_limit",
]
