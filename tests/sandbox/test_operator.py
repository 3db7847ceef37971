"""The udf operator with the real sandbox: a task of a udf job runs its pinned bundle's handler
confined and publishes the rows it returns; a handler that fails fails the task for good."""

from __future__ import annotations

import json

import pytest

from tests.udf.test_runs import udf_dag
from tests.udf_bundles import bundle
from trace_chain.object_store import object_store_from_url
from trace_tasks import sandbox
from trace_tasks.runner import task_run
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.udf.models import OutputBatch
from trace_web.udf.services import bundle_upload


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def test_a_udf_task_runs_its_handler_in_the_sandbox_and_publishes_its_rows(org, settings):
    source = (
        "import os\n"
        "def handle(ctx):\n"
        "    t = ctx.params['threshold']\n"
        "    return [{'n': i, 't': t, 'uid': os.getuid()} for i in range(3)]\n"
    )
    bundle_upload(org=org, data=bundle({"main.py": source.encode()}))
    dag_sync(org=org, yaml_text=udf_dag("demo@1.0.0"), activate=True)
    task = job_run_manual(org=org, dag_name="users", job_name="handle")
    assert task_run(task_id=task.pk, worker_id="udf").status == "completed"
    task.refresh_from_db()
    assert task.status == "Completed", task.error
    (batch,) = OutputBatch.objects.filter(task_id=task.pk)
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    lines = store.get_bytes(batch.location.removeprefix(store.uri(""))).decode().splitlines()
    uid = sandbox.uid_base()  # the test process is no pool child: slot 0
    assert [json.loads(line) for line in lines] == [{"n": i, "t": 3, "uid": uid} for i in range(3)]


def test_a_failing_handler_fails_the_task_for_good_with_its_code(org):
    source = b"def handle(ctx):\n    raise ValueError('no such pool')\n"
    bundle_upload(org=org, data=bundle({"main.py": source}))
    dag_sync(org=org, yaml_text=udf_dag("demo@1.0.0"), activate=True)
    task = job_run_manual(org=org, dag_name="users", job_name="handle")
    assert task_run(task_id=task.pk, worker_id="udf").status == "failed"
    task.refresh_from_db()
    assert task.status == "Failed" and task.next_retry_at is None
    assert "handler failed (exception): ValueError: no such pool" in task.error
