"""Logs as JSON lines (`TRACE_LOG_FORMAT=json`), and the task a line is written for.

While a worker runs a task (trace_tasks.runner), `task_log_context` puts its org, DAG, job, task
and attempt in a context variable; `TaskContextFilter` copies them onto every record of that
thread, so each line of a task says which it is, in text and in JSON alike."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

TASK_FIELDS = ("org", "dag", "job", "task", "attempt")
_task: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "trace_task_log_context", default=None
)


@contextlib.contextmanager
def task_log_context(**fields: Any) -> Iterator[None]:
    """Every record logged inside (in this thread) carries `fields` (TASK_FIELDS)."""
    token = _task.set({key: fields.get(key) for key in TASK_FIELDS})
    try:
        yield
    finally:
        _task.reset(token)


class TaskContextFilter(logging.Filter):
    """Adds the running task's fields to a record (None outside a task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _task.get() or {}
        for key in TASK_FIELDS:
            if not hasattr(record, key):
                setattr(record, key, current.get(key))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the task's
    fields when in a task, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in TASK_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with `[org=… job=… task=… attempt=…]` on a task's lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [(k, getattr(record, k, None)) for k in TASK_FIELDS]
        tagged = " ".join(f"{k}={v}" for k, v in fields if v is not None)
        if not tagged:
            return text
        head, sep, rest = text.partition("\n")
        return f"{head} [{tagged}]{sep}{rest}"
