"""Sends wake-ups to the broker. A wake-up carries only a task id; losing or repeating one is
harmless because workers claim through the database."""

from __future__ import annotations

from trace_tasks.queues import Queue

RUN_TASK = "trace.run_task"


def send_wake(*, task_id: int, queue: str) -> None:
    from trace_tasks.celery_app import app

    # retry=False: a broker outage must surface as an error so the outbox row backs off and
    # stays Pending, instead of blocking the drainer inside kombu's own retry loop.
    app.send_task(RUN_TASK, args=[task_id], queue=Queue(queue).value, retry=False)


def request_chain_sync_plan() -> None:
    """Ask the dispatcher for a chain_sync planning pass now (idempotent; ticks do it too)."""
    from trace_tasks.celery_app import app

    try:
        app.send_task("trace.dispatch.plan_chain_syncs", queue=Queue.DISPATCHER.value, retry=False)
    except Exception:  # only a latency shortcut: the beat tick plans anyway
        import logging

        logging.getLogger(__name__).warning("could not request a chain_sync planning pass")
