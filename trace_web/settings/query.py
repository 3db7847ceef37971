"""Query limits (TRACE.md section 8): time per user and per task query, inline rows and bytes,
exports past them (rows, how long they are kept), and the sandboxed engine's memory and
threads."""

from trace_web.settings.env import env_float, env_int, env_str

TRACE_USER_QUERY_SECONDS = env_float("TRACE_USER_QUERY_SECONDS", 60.0)
TRACE_TASK_QUERY_SECONDS = env_float("TRACE_TASK_QUERY_SECONDS", 300.0)
TRACE_QUERY_MAX_ROWS = env_int("TRACE_QUERY_MAX_ROWS", 10_000)
TRACE_QUERY_MEMORY_LIMIT = env_str("TRACE_QUERY_MEMORY_LIMIT", "1GB")
TRACE_QUERY_THREADS = env_int("TRACE_QUERY_THREADS", 2)
TRACE_QUERY_MAX_BYTES = env_int("TRACE_QUERY_MAX_BYTES", 10 * 1024 * 1024)
# Past the inline caps a result is exported to the object store, up to these many rows.
TRACE_QUERY_EXPORT_MAX_ROWS = env_int("TRACE_QUERY_EXPORT_MAX_ROWS", 10_000_000)
TRACE_QUERY_RESULT_TTL_SECONDS = env_int("TRACE_QUERY_RESULT_TTL_SECONDS", 24 * 3600)
