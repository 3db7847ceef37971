"""Django settings for Trace, split by concern; every value comes from the environment.

See docs/configuration.md for the variables and their Lite defaults.
"""

from trace_web.settings.alerts import *  # noqa: F403
from trace_web.settings.base import *  # noqa: F403
from trace_web.settings.celery import *  # noqa: F403
from trace_web.settings.db import *  # noqa: F403
from trace_web.settings.orchestration import *  # noqa: F403
from trace_web.settings.query import *  # noqa: F403
from trace_web.settings.security import *  # noqa: F403
from trace_web.settings.storage import *  # noqa: F403
from trace_web.settings.udf import *  # noqa: F403
