"""The Celery tasks every runtime queue serves: a wake-up carrying only a task id, and the
shutdown hook that hands long-running attempts back."""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import worker_process_init, worker_shutting_down

from trace_tasks.decorators import trace_task
from trace_tasks.publisher import RUN_STREAM_TASK, RUN_TASK


@trace_task(RUN_TASK, bind=True)
def run_task(self, task_id: int) -> str:
    return _run(task_id, self.request.hostname)


# Acknowledged on receipt, not when the task returns: an always_on attempt runs for ever, and
# a wake-up held unacked for its whole life is one the broker redelivers (visibility timeout)
# or a reconnecting worker restores. The lease makes early acks safe: a killed worker's
# attempt expires, the reaper fails it and the source monitor restarts it; a wake-up lost
# between ack and claim is re-sent by the re-wake loop.
@trace_task(RUN_STREAM_TASK, bind=True, acks_late=False)
def run_stream_task(self, task_id: int) -> str:
    return _run(task_id, self.request.hostname)


def _run(task_id: int, node: str | None) -> str:
    from trace_tasks.runner import default_worker_id, task_run

    return task_run(task_id=int(task_id), worker_id=default_worker_id(node)).status


@worker_process_init.connect
def _warm_up_operators(**_: Any) -> None:
    """Each pool process pays its operators' fixed costs (imports) once, before any task."""
    from django.conf import settings

    from trace_operators.registry import operators_warm_up

    operators_warm_up(settings.TRACE_WORKER_WARM_UP_OPERATORS)


@worker_shutting_down.connect
def _hand_back_long_running(**_: Any) -> None:
    # Runs in the worker's main process, inside its signal handler: no import, no logging.
    # Only a thread pool (the stream worker) runs attempts in this process; without this its
    # warm shutdown would wait for ever on attempts that never end.
    runner = sys.modules.get("trace_tasks.runner")
    if runner is not None:
        runner.worker_stopping()
