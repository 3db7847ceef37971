"""Orchestration defaults (leases, retries, outbox, dispatcher cadence, retention); see
docs/configuration.md."""

from trace_web.settings.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_float,
    env_int,
    env_list,
)

TRACE_LEASE_SECONDS = env_float("TRACE_LEASE_SECONDS", 120.0)
TRACE_HEARTBEAT_SECONDS = env_float("TRACE_HEARTBEAT_SECONDS", 30.0)
TRACE_MAX_ATTEMPTS = env_int("TRACE_MAX_ATTEMPTS", 3)
TRACE_RETRY_BACKOFF_BASE_SECONDS = env_float("TRACE_RETRY_BACKOFF_BASE_SECONDS", 30.0)
TRACE_RETRY_BACKOFF_MAX_SECONDS = env_float("TRACE_RETRY_BACKOFF_MAX_SECONDS", 600.0)
TRACE_OUTBOX_BACKOFF_BASE_SECONDS = env_float("TRACE_OUTBOX_BACKOFF_BASE_SECONDS", 1.0)
TRACE_OUTBOX_BACKOFF_MAX_SECONDS = env_float("TRACE_OUTBOX_BACKOFF_MAX_SECONDS", 300.0)
TRACE_OUTBOX_MAX_TRIES = env_int("TRACE_OUTBOX_MAX_TRIES", 20)
# Publish outbox rows right after the transaction that wrote them commits; the beat-driven
# drain loop remains the guarantee, this only removes its tick from the latency.
TRACE_OUTBOX_FLUSH_ON_COMMIT = env_bool("TRACE_OUTBOX_FLUSH_ON_COMMIT", True)
TRACE_DISPATCH_TICK_SECONDS = env_float("TRACE_DISPATCH_TICK_SECONDS", 1.0)
# Operators whose fixed costs (heavy imports) each worker process pays at start, not in its
# first task; empty: none.
TRACE_WORKER_WARM_UP_OPERATORS = env_list("TRACE_WORKER_WARM_UP_OPERATORS", ["cryo_ingest"])
# A Queued task not claimed this long after its last wake-up is woken again (lost message).
TRACE_REWAKE_AFTER_SECONDS = env_float("TRACE_REWAKE_AFTER_SECONDS", 60.0)
# An always_on source whose task ended terminally is restarted after this pause.
TRACE_SOURCE_RESTART_SECONDS = env_float("TRACE_SOURCE_RESTART_SECONDS", 5.0)

# Retention: finished tasks (with their transitions and inputs) and published outbox rows are
# deleted this long after they finished, in batches, by the dispatcher's pruner every
# TRACE_PRUNE_EVERY_SECONDS. Rows still needed are never deleted (see services/retention.py).
TRACE_TASK_RETENTION_SECONDS = env_float("TRACE_TASK_RETENTION_SECONDS", 7 * 24 * 3600.0)
TRACE_OUTBOX_RETENTION_SECONDS = env_float("TRACE_OUTBOX_RETENTION_SECONDS", 24 * 3600.0)
TRACE_PRUNE_BATCH_SIZE = env_int("TRACE_PRUNE_BATCH_SIZE", 1000)
TRACE_PRUNE_EVERY_SECONDS = env_float("TRACE_PRUNE_EVERY_SECONDS", 60.0)
for _name in ("TRACE_TASK_RETENTION_SECONDS", "TRACE_OUTBOX_RETENTION_SECONDS"):
    if globals()[_name] < 0:
        raise ImproperlyConfiguredEnv(f"{_name} must be >= 0 (seconds), got {globals()[_name]}")
for _name in ("TRACE_PRUNE_BATCH_SIZE", "TRACE_PRUNE_EVERY_SECONDS"):
    if globals()[_name] <= 0:
        raise ImproperlyConfiguredEnv(f"{_name} must be above 0, got {globals()[_name]}")
del _name
