"""`POST /v1/task/buffer-publish`: an attempt's output rows as a JSONL batch under its job's
publication prefix and a pointer to it; a malformed or oversized batch is refused whole and
leaves nothing behind; a stale attempt's publish is refused."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from tests.dags import noop_dag
from trace_chain.object_store import object_store_from_url
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import task_claim, task_fail
from trace_web.udf.models import OutputBatch


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def claimed(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    return task_claim(task_id=task.pk, worker_id="udf")


def runtime(claimed) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {claimed.capability_token}")
    return client


def publish(claimed, body, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    return runtime(claimed).generic(
        "POST", "/v1/task/buffer-publish", data, content_type="application/json"
    )


def stored(settings):
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    return store, store.list("orgs/")


def test_a_batch_is_stored_as_jsonl_under_the_attempt_and_its_pointer_kept(claimed, org, settings):
    rows = [{"block": 1, "value": "0x01"}, {"block": 2, "value": None, "tags": ["a"]}]
    response = publish(claimed, {"rows": rows})
    assert response.status_code == 200, response.json()
    pointer = response.json()
    store, keys = stored(settings)
    task = claimed.task
    expected = (
        f"orgs/{org.pk}/chain/extract/all/{task.pk}-{task.attempt}/batch-00001-output-0.jsonl"
    )
    assert keys == [expected]  # the staging copy is gone
    data = store.get_bytes(expected)
    assert [json.loads(line) for line in data.decode().splitlines()] == rows
    assert pointer == {
        "batch": 1,
        "output": 0,
        "location": store.uri(expected),
        "row_count": 2,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    batch = OutputBatch.objects.get(task_id=task.pk)
    assert (batch.org_id, batch.attempt, batch.row_count) == (org.pk, task.attempt, 2)
    assert publish(claimed, {"rows": [{"x": 1}]}).json()["batch"] == 2


MALFORMED = {
    "not-a-list": ({"rows": {"a": 1}}, None, "rows:"),
    "not-objects": ({"rows": [1, 2]}, None, "rows[0]:"),
    "nan": (None, b'{"rows": [{"x": NaN}]}', "NaN is not a JSON number"),
    "bad-utf8": (None, b'{"rows": [{"x": "\xff"}]}', "JSON parse error"),
    "nul": ({"rows": [{"x": "a\u0000b"}]}, None, "NUL"),
    "unknown-field": ({"rows": [], "colour": 1}, None, "colour:"),
    "output-out-of-range": ({"rows": [], "output": 3}, None, "output: 3 out of range"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_batch_is_refused_and_nothing_is_stored(claimed, settings, case):
    body, raw, message = MALFORMED[case]
    response = publish(claimed, body, raw)
    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"], response.json()
    assert stored(settings)[1] == [] and not OutputBatch.objects.exists()


def test_an_oversized_batch_is_refused_and_nothing_is_stored(claimed, settings):
    settings.TRACE_UDF_OUTPUT_MAX_BYTES = 100
    response = publish(claimed, {"rows": [{"i": i, "pad": "x" * 10} for i in range(10)]})
    assert response.status_code == 400
    assert "over the limit of 100 bytes" in response.json()["detail"]
    settings.TRACE_UDF_OUTPUT_MAX_BYTES = 10_000
    settings.TRACE_UDF_OUTPUT_MAX_ROWS = 5
    response = publish(claimed, {"rows": [{"i": i} for i in range(6)]})
    assert response.json()["detail"] == "rows: 6 rows, over the limit of 5"
    assert stored(settings)[1] == [] and not OutputBatch.objects.exists()


def test_a_stale_attempts_publish_is_refused(claimed, settings):
    task_fail(lease=claimed.lease, error="gone", retryable=True)
    response = publish(claimed, {"rows": [{"x": 1}]})
    assert response.status_code == 409 and response.json()["error"] == "stale_attempt"
    assert stored(settings)[1] == [] and not OutputBatch.objects.exists()


@given(
    rows=st.lists(
        st.dictionaries(
            st.text("abc", max_size=5), st.text("xyz é✓", max_size=30) | st.integers(), max_size=4
        ),
        max_size=40,
    ),
    max_bytes=st.integers(min_value=1, max_value=300),
    max_rows=st.integers(min_value=1, max_value=7),
)
def test_batch_split_keeps_every_row_in_order_within_the_caps(rows, max_bytes, max_rows):
    from trace_web.udf.buffer import batch_encode, batch_split

    batches = batch_split(rows, max_bytes=max_bytes, max_rows=max_rows)
    assert [row for batch in batches for row in batch] == rows
    assert batches == [[]] if rows == [] else all(batches)
    for batch in batches:
        assert len(batch) <= max_rows
        size = len(batch_encode(batch, max_bytes=10**9, max_rows=10**9))
        # over the byte cap only when one row alone is
        assert size <= max_bytes or len(batch) == 1
