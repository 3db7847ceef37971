"""User code (UDF) limits: what a bundle upload may hold, and how much one buffer-publish
batch of a handler's output may be. See docs/udf.md."""

from trace_web.settings.env import env_float, env_int

# A bundle zip: total compressed bytes, files, bytes per file once extracted, and the largest
# extracted/compressed ratio (a zip bomb inflates far past any real source file's ratio).
TRACE_UDF_BUNDLE_MAX_BYTES = env_int("TRACE_UDF_BUNDLE_MAX_BYTES", 4 * 1024 * 1024)
TRACE_UDF_BUNDLE_MAX_FILES = env_int("TRACE_UDF_BUNDLE_MAX_FILES", 200)
TRACE_UDF_BUNDLE_MAX_FILE_BYTES = env_int("TRACE_UDF_BUNDLE_MAX_FILE_BYTES", 2 * 1024 * 1024)
TRACE_UDF_BUNDLE_MAX_TOTAL_BYTES = env_int("TRACE_UDF_BUNDLE_MAX_TOTAL_BYTES", 20 * 1024 * 1024)
TRACE_UDF_BUNDLE_MAX_RATIO = env_float("TRACE_UDF_BUNDLE_MAX_RATIO", 100.0)
# One buffer-publish batch: its JSONL bytes and rows.
TRACE_UDF_OUTPUT_MAX_BYTES = env_int("TRACE_UDF_OUTPUT_MAX_BYTES", 2 * 1024 * 1024)
TRACE_UDF_OUTPUT_MAX_ROWS = env_int("TRACE_UDF_OUTPUT_MAX_ROWS", 100_000)
# The sandbox runs pool slot n as uid TRACE_UDF_UID_BASE + n (its own RLIMIT_NPROC count and
# nothing another uid owns); the uids need no passwd entry.
TRACE_UDF_UID_BASE = env_int("TRACE_UDF_UID_BASE", 61000)
