"""The Celery task every runtime queue serves: a wake-up carrying only a task id."""

from __future__ import annotations

from trace_tasks.decorators import trace_task
from trace_tasks.publisher import RUN_TASK


@trace_task(RUN_TASK)
def run_task(task_id: int) -> str:
    from trace_tasks.runner import task_run

    return task_run(task_id=int(task_id)).status
