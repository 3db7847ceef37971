"""The one decorator every Trace Celery task uses: registers it on the app and runs it inside a
Django "request cycle" for database connections, with the task's ids in the log context."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from trace_tasks.celery_app import app

log = logging.getLogger("trace_tasks")


def trace_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register `func` as Celery task `name`; `options` are Celery task options (acks_late)."""

    def register(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            from django.db import close_old_connections

            # Like a web request: reuse the process's connection while it is healthy and
            # younger than CONN_MAX_AGE, replace it when it broke (e.g. Postgres restarted).
            close_old_connections()
            try:
                return func(*args, **kwargs)
            except Exception:
                log.exception("task %s failed (args=%s)", name, args)
                raise
            finally:
                close_old_connections()

        return app.task(name=name, ignore_result=True, **options)(run)

    return register
