"""Object store for cold data and artifacts: a local directory in Lite, S3 when configured."""

from trace_web.settings.base import TRACE_HOME
from trace_web.settings.env import ImproperlyConfiguredEnv, env_float, env_str
from trace_web.settings.query import TRACE_TASK_QUERY_SECONDS

TRACE_OBJECT_STORE_URL = env_str("TRACE_OBJECT_STORE_URL", (TRACE_HOME / "objects").as_uri())

# Cold partitions replaced by a merge or a rebuild are deleted from the store this long after
# (by the dispatcher's pruner); queries already reading them finish first, so it must exceed
# the longest query (TRACE_TASK_QUERY_SECONDS).
TRACE_COLD_REPLACED_RETENTION_SECONDS = env_float("TRACE_COLD_REPLACED_RETENTION_SECONDS", 3600.0)
if TRACE_COLD_REPLACED_RETENTION_SECONDS <= TRACE_TASK_QUERY_SECONDS:
    raise ImproperlyConfiguredEnv(
        "TRACE_COLD_REPLACED_RETENTION_SECONDS must exceed TRACE_TASK_QUERY_SECONDS "
        f"({TRACE_TASK_QUERY_SECONDS}): a query may still be reading what it would delete; "
        f"got {TRACE_COLD_REPLACED_RETENTION_SECONDS}"
    )
