"""Object store for cold data and artifacts: a local directory in Lite, S3 when configured."""

from trace_web.settings.base import TRACE_HOME
from trace_web.settings.env import env_str

TRACE_OBJECT_STORE_URL = env_str("TRACE_OBJECT_STORE_URL", (TRACE_HOME / "objects").as_uri())
