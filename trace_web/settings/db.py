"""Databases: the Django-owned state DB and the SQLAlchemy-owned data DB (never joined)."""

import dj_database_url

from trace_web.settings.env import env_str

TRACE_STATE_DB_URL = env_str("TRACE_STATE_DB_URL", "postgres://postgres@127.0.0.1:5432/trace_state")
# The data DB is not a Django database: trace_chain opens it with SQLAlchemy Core.
TRACE_DATA_DB_URL = env_str("TRACE_DATA_DB_URL", "postgres://postgres@127.0.0.1:5432/trace_data")

DATABASES = {
    "default": dj_database_url.parse(TRACE_STATE_DB_URL, conn_max_age=60, conn_health_checks=True)
}
