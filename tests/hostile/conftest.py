"""A small world with one of everything the API can address (an org with an admin, a DAG with
a webhook source, a queued and a claimed task, a chain_sync, a chain status row), and the
helpers the hostile-input tests share: a row count of every table, the JSON error shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from tests.dags import noop_dag
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual, webhook_secret_rotate
from trace_web.orchestration.services.tasks import ClaimedTask, task_claim
from trace_web.orgs.models import Role

SOURCES = """
name: sources
jobs:
  - name: hook
    activation: source
    source: {kind: webhook}
    operator: noop
    outputs: 0
"""
CHAIN_SYNC = """
kind: chain_sync
name: history
chain_id: 31337
mode: fixed_target
from_block: 0
to_block: 25
streams:
  - {dataset: blocks, chunk_size: 10, max_inflight: 2, rpc_pool: devchain}
"""
APPS = ("orgs", "datasets", "orchestration", "chain_sync", "authtoken", "django_celery_beat")


@dataclass
class World:
    admin: APIClient
    org_slug: str
    queued_task_id: int
    claimed: ClaimedTask
    webhook_secret: str

    def runtime(self, token: str | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token or self.claimed.capability_token}")
        return client


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def world(org, client_for, settings, hot_engine) -> World:
    from trace_web.chain_sync.services import chain_sync_apply

    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dag_sync(org=org, yaml_text=SOURCES, activate=True)
    chain_sync_apply(org=org, yaml_text=CHAIN_SYNC)
    queued = job_run_manual(org=org, dag_name="chain", job_name="extract")
    running = job_run_manual(org=org, dag_name="chain", job_name="extract")
    claimed = task_claim(task_id=running.pk, worker_id="hostile")
    assert claimed is not None
    secret = webhook_secret_rotate(org=org, dag_name="sources", job_name="hook")
    return World(
        admin=client_for(org, Role.ADMIN),
        org_slug=org.slug,
        queued_task_id=queued.pk,
        claimed=claimed,
        webhook_secret=secret,
    )


def row_counts() -> dict[str, int]:
    """Rows of every table the API can write, by model."""
    return {
        model._meta.label: model.objects.count()
        for label in APPS
        for model in apps.get_app_config(label).get_models()
    }


def assert_error_shape(response: Any, context: str) -> None:
    """A refusal is JSON in the one error shape, never an HTML page or a 5xx."""
    assert response.status_code < 500, (context, response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), (
            context,
            response["Content-Type"],
        )
        body = response.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("detail"), str), (
            context,
            body,
        )
