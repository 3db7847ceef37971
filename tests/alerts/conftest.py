"""Alerting tests: an object store of their own (bundles are stored there), and the pieces an
alert is made of: a UDF bundle uploaded to an org, a channel, an `alert_evaluate` DAG."""

from __future__ import annotations

import pytest

from tests.udf_bundles import bundle
from trace_web.udf.services import bundle_upload

# An alert_evaluate job reading a follower's published blocks, as docs/alerts.md deploys it
# (the follower's own DAG is not needed to deploy it, nor to queue a backtest).
ALERTING_DAG = """
name: {name}
jobs:
  - name: evaluate
    activation: reactive
    runtime: udf
    operator: alert_evaluate
    execution_strategy: PerUpdate
    config: {config}
    inputs: [{{from: {{dataset: chain.hot}}}}]
"""


def alerting_dag(name: str = "alerting", config: str = "{chain_id: 31337}") -> str:
    return ALERTING_DAG.format(name=name, config=config)


@pytest.fixture(autouse=True)
def _own_object_store(settings, tmp_path):
    settings.TRACE_OBJECT_STORE_URL = (tmp_path / "objects").as_uri()
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def upload_bundle(org, *, name: str = "demo", version: str = "1.0.0"):
    return bundle_upload(org=org, data=bundle(name=name, version=version)).bundle


def make_event(definition, *, block: int, state: str = "active", backtest: bool = False, **kw):
    """An event row as the sink writes it (the sink's own tests prove how it gets there)."""
    from trace_web.alerts.models import AlertEvent

    key = f"{definition.pk}|{block}|{state}|{backtest}|{kw.get('tx_hash', '')}"
    return AlertEvent.objects.create(
        org=definition.org,
        definition=definition,
        dedupe_key=key,
        match_key=key,
        chain_id=definition.chain_id,
        block_number=block,
        block_hash="0x" + f"{block:064x}",
        producer_task_id=1,
        producer_attempt=1,
        state=state,
        backtest=backtest,
        **kw,
    )


def make_delivery(event, channel, *, status: str = "pending", purpose: str = "notify", **kw):
    from django.utils import timezone

    from trace_web.alerts.models import Delivery

    return Delivery.objects.create(
        org=event.org,
        event=event,
        channel=channel,
        purpose=purpose,
        status=status,
        next_attempt_at=timezone.now(),
        **kw,
    )


def published_record(org, definition, rows: list, *, task_id: int = 41, **fields) -> dict:
    """The trusted record of a publication as sink_enqueue writes it, its batch (JSONL rows,
    or raw bytes for a row that is a bytes object) put in the object store, for
    `definition`'s chain; `fields` override the record's."""
    import hashlib
    import json

    from django.conf import settings

    from trace_chain.object_store import object_store_from_url

    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    data = b"".join(
        (row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows
    )
    key = f"orgs/{org.pk}/alerts/evaluate/{task_id}/1/batch-0.jsonl"
    store.put_bytes(data, key)
    root = store.uri() if store.uri().endswith("/") else store.uri() + "/"
    return {
        "org_id": org.pk,
        "task_id": task_id,
        "attempt": 1,
        "dag": "alerts",
        "job": "evaluate",
        "chain_id": definition.chain_id,
        "alerts": None,
        "backtest": False,
        "deliver": False,
        "definitions": None,
        "evaluated": [],
        "seen": {},
        "batches": [
            {
                "location": root + key,
                "sha256": hashlib.sha256(data).hexdigest(),
                "row_count": len(rows),
            }
        ],
        **fields,
    }


def dead_letter(org, definition, rows: list, *, task_id: int = 41, error: str = "refused"):
    """A refused publication as the sink records it: its batch (JSONL rows) in the object
    store, and the trusted record pointing at it, for `definition`'s chain."""
    from trace_web.alerts.models import DeadLetterBatch

    record = published_record(org, definition, rows, task_id=task_id)
    return DeadLetterBatch.objects.create(
        org=org, task_id=task_id, attempt=1, record=record, error=error
    )


def event_row(definition, *, block: int = 5, **overrides) -> dict:
    return {
        "definition": definition.pk,
        "chain_id": definition.chain_id,
        "block_number": block,
        "block_hash": "0x" + f"{block:064x}",
        "tx_hash": "0x" + "cd" * 32,
        **overrides,
    }
