"""Orchestration defaults (leases, retries, outbox, dispatcher cadence); see brief section 8."""

from trace_web.settings.env import env_bool, env_float, env_int

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
# A Queued task not claimed this long after its last wake-up is woken again (lost message).
TRACE_REWAKE_AFTER_SECONDS = env_float("TRACE_REWAKE_AFTER_SECONDS", 60.0)
# An always_on source whose task ended terminally is restarted after this pause.
TRACE_SOURCE_RESTART_SECONDS = env_float("TRACE_SOURCE_RESTART_SECONDS", 5.0)
