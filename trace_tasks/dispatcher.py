"""Dispatcher loops, driven by beat on the `dispatcher` queue. Each tick calls one service;
all of them are safe to run concurrently and to repeat (SKIP LOCKED, idempotent keys)."""

from __future__ import annotations

from trace_tasks.decorators import trace_task


@trace_task("trace.dispatch.outbox_drain")
def outbox_drain() -> int:
    from trace_web.orchestration.services.outbox import outbox_drain as drain

    total = 0
    while batch := drain(limit=200):  # drain the backlog, not one batch per tick
        total += batch
    return total


@trace_task("trace.dispatch.retry_due")
def retry_due() -> int:
    from trace_web.orchestration.services.tasks import tasks_requeue_due, tasks_rewake_stale

    return tasks_requeue_due() + tasks_rewake_stale()


@trace_task("trace.dispatch.reap_leases")
def reap_leases() -> int:
    from trace_web.orchestration.services.tasks import tasks_reap_expired

    return tasks_reap_expired()


@trace_task("trace.dispatch.monitor_sources")
def monitor_sources() -> int:
    from trace_web.orchestration.services.sources import sources_monitor

    return sources_monitor()


@trace_task("trace.dispatch.scan_invalidations")
def scan_invalidations() -> int:
    from trace_web.orchestration.services.routing import invalidations_schedule

    return invalidations_schedule()


@trace_task("trace.dispatch.source_fire")
def source_fire(org_id: int, dag_name: str, job_name: str) -> int | None:
    from trace_web.orchestration.services.sources import source_fire as fire

    task = fire(org_id=org_id, dag_name=dag_name, job_name=job_name)
    return task.pk if task else None


@trace_task("trace.dispatch.plan_chain_syncs")
def plan_chain_syncs() -> int:
    from trace_web.chain_sync.services import chain_sync_plan

    return chain_sync_plan()


@trace_task("trace.dispatch.deliveries")
def deliveries() -> int:
    """Alert deliveries: expired send leases back to pending (their attempt counted), then a
    wake-up for each delivery whose retry or rate-limit wait is over."""
    from trace_web.alerts.delivery import deliveries_reap, deliveries_wake_due

    return deliveries_reap(limit=500) + deliveries_wake_due(limit=500)


@trace_task("trace.dispatch.prune_state")
def prune_state() -> int:
    from trace_web.orchestration.services.retention import state_prune

    return state_prune()
