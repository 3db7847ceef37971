"""Logs that say which task they are about: inside a task (trace_tasks.runner) every record
carries its org, DAG, job, task and attempt, as JSON lines with TRACE_LOG_FORMAT=json, tagged
text otherwise; a real worker's lines prove it end to end."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from tests.dags import noop_dag
from trace_web.observability.logs import (
    JsonFormatter,
    TaskContextFilter,
    TextFormatter,
    task_log_context,
)
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual


def captured(formatter: logging.Formatter):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.observability.sample")
    logger.addHandler(handler)
    logger.propagate = False
    return logger, stream


def test_json_lines_carry_the_task_inside_its_context_only():
    logger, stream = captured(JsonFormatter())
    with task_log_context(org=3, dag="d", job="j", task=41, attempt=2):
        logger.warning("inside %s", "the task")
    logger.info("outside")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    inside, outside, failed = (json.loads(line) for line in stream.getvalue().splitlines()[:3])
    assert {k: inside[k] for k in ("org", "dag", "job", "task", "attempt")} == {
        "org": 3,
        "dag": "d",
        "job": "j",
        "task": 41,
        "attempt": 2,
    }
    assert inside["message"] == "inside the task" and inside["level"] == "WARNING"
    assert inside["logger"] == "tests.observability.sample" and inside["time"].endswith("+00:00")
    assert "task" not in outside and outside["message"] == "outside"
    assert "ValueError: boom" in failed["exception"]


def test_text_lines_are_tagged_inside_a_task():
    logger, stream = captured(TextFormatter("%(levelname)s %(message)s"))
    with task_log_context(org=3, dag="d", job="j", task=41, attempt=2):
        logger.warning("inside")
    logger.warning("outside")
    assert stream.getvalue().splitlines() == [
        "WARNING inside [org=3 dag=d job=j task=41 attempt=2]",
        "WARNING outside",
    ]


def test_a_bad_log_format_stops_start_up_naming_the_variable():
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "TRACE_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "TRACE_LOG_FORMAT must be text or json, got 'xml'" in done.stderr


@pytest.mark.celery
def test_a_workers_task_lines_are_json_with_the_task(services, org):
    dag_sync(org=org, yaml_text=noop_dag(extract_config="{fail_permanently: true}"), activate=True)
    worker = services.worker(
        "w1", queues="platform", concurrency=1, env={"TRACE_LOG_FORMAT": "json"}
    )
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    from tests.alerts.test_delivery_celery import wait_for

    wait_for(lambda: Task.objects.get(pk=task.pk).status == "Failed", what="the task failing")
    wait_for(lambda: f"task {task.pk} attempt 1: failed" in worker.log(), what="its log line")
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    (finished,) = [line for line in lines if line["message"] == f"task {task.pk} attempt 1: failed"]
    assert (finished["org"], finished["dag"], finished["job"], finished["task"]) == (
        org.pk,
        "chain",
        "extract",
        task.pk,
    )
    assert finished["attempt"] == 1 and finished["logger"] == "trace_tasks.runner"
