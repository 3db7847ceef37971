"""GET /metrics while Lite's real workers do the work (issue 11, deliverable 2): each figure
moves with what the platform is doing. The dispatcher worker is frozen (SIGSTOP) for the first
part, so nothing drains, plans or reaps: queue depth and age, the broker's depth, the outbox's
pending rows, the chain_sync backlog, the lease lag of a killed worker's task, the sink lag and
the delivery backlog all grow; thawed, every one of them falls back to zero. A follower
catching up on 1,000 blocks shows its tip lag above zero, then zero; per-worker gauges show
who ran what; an outbox row whose publish keeps failing ends Failed."""

from __future__ import annotations

import os
import signal

import pytest
from django.db import transaction
from django.test import Client

from tests.alerts.factories import ChannelFactory, DeliveryFactory
from tests.e2e.test_chain_sync import sync_yaml
from tests.faults import free_port
from tests.observability.test_metrics import scrape
from trace_chain import devchain
from trace_tasks import publisher
from trace_tasks.publisher import send_wake
from trace_web.alerts.models import ChannelKind, Delivery, DeliveryStatus
from trace_web.chain_sync.services import chain_sync_apply
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus, Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_add, outbox_drain
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery

WORK_DAG = """
name: work
jobs:
  - name: hold
    activation: manual
    operator: noop
    outputs: 0
    max_attempts: 1
    config: {sleep_seconds: 60}
  - name: batch
    activation: manual
    operator: noop
    outputs: 0
"""
FOLLOW_DAG = """
name: watch
jobs:
  - name: follower
    activation: source
    source: {kind: always_on}
    operator: block_follower
    outputs: 1
    update_strategy: replace
    config: {chain_id: 31337, rpc_pool: devchain, batch_size: 10, emit_every_blocks: 100}
"""

COMPONENTS = ("beat", "worker-platform", "worker-stream", "worker-dispatcher", "worker-delivery")
PLATFORM = (("queue", "platform"),)
CHAIN = (("chain_id", "31337"),)


def metric(name: str, labels: tuple = ()) -> float | None:
    return scrape(Client()).get((name, tuple(sorted(labels))))


def freeze(stack, name: str, sig: int) -> None:
    os.killpg(stack.component(name).proc.pid, sig)


def test_every_backlog_figure_moves_with_the_work(
    lite_stack, org, hot_engine, cold, settings, httpserver
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    with devchain.Anvil() as node:
        _run(lite_stack, org, settings, node, httpserver.url_for("/hook"))


def _run(lite_stack, org, settings, node, hook: str) -> None:
    os.environ["TRACE_RPC_POOL_DEVCHAIN"] = node.url  # inherited by the workers
    try:
        stack = lite_stack.start(
            names=COMPONENTS,
            env={"TRACE_DELIVERY_ALLOW_PRIVATE": "true"},  # the receiver is on loopback
        )
    finally:
        del os.environ["TRACE_RPC_POOL_DEVCHAIN"]
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False  # the dispatcher alone publishes
    dag_sync(org=org, yaml_text=WORK_DAG, activate=True)

    # -- Part 1: the dispatcher frozen; nothing drains, plans or reaps. ------------------
    freeze(stack, "worker-dispatcher", signal.SIGSTOP)
    # A task whose worker dies holding it: woken by hand, claimed, then the worker killed.
    held = job_run_manual(org=org, dag_name="work", job_name="hold")
    send_wake(task_id=held.pk, queue="platform")
    stack.wait_for(
        lambda: Task.objects.filter(pk=held.pk, status="Running").exists(), what="held Running"
    )
    worker = Task.objects.get(pk=held.pk).worker_id.rsplit(":", 2)[0]
    assert metric("trace_worker_running_tasks", (("worker", worker),)) == 1
    stack.kill("worker-platform")  # its lease (4 s) runs out; nobody reaps it

    waiting = [job_run_manual(org=org, dag_name="work", job_name="batch") for _ in range(2)]
    for _ in range(3):  # wake-ups nobody takes: sent to a queue no worker consumes
        send_wake(task_id=waiting[0].pk, queue="udf")
    chain_sync_apply(org=org, yaml_text=sync_yaml(to_block=20, datasets=("blocks",)))
    with transaction.atomic():
        channel = ChannelFactory(org=org, kind=ChannelKind.WEBHOOK, target=hook)
        delivery = DeliveryFactory(channel=channel)
        outbox_add(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": delivery.pk})
        sink = outbox_add(kind=OutboxKind.ALERT_SINK, payload=_empty_publication(held))

    first = scrape(Client())
    assert first[("trace_tasks", (*PLATFORM, ("status", "Queued")))] == 2
    assert first[("trace_tasks", (*PLATFORM, ("status", "Running")))] == 1
    assert first[("trace_broker_queue_messages", (("queue", "udf"),))] == 3
    # Three tasks' wake-up rows, the held one's included (it was woken by hand instead).
    assert first[("trace_outbox_rows", (("kind", "wake_task"), ("status", "Pending")))] == 3
    backlog = (("chain_sync", "hist"), ("dataset", "blocks"), ("org", org.slug))
    assert first[("trace_chain_sync_backlog_blocks", backlog)] == 20  # to_block exclusive
    stack.wait_for(
        lambda: all(
            (metric(name, labels) or 0) >= 2
            for name, labels in (
                ("trace_queue_oldest_seconds", PLATFORM),
                ("trace_lease_lag_seconds", PLATFORM),
                ("trace_outbox_oldest_pending_seconds", (("kind", "wake_task"),)),
                ("trace_alert_sink_lag_seconds", ()),
                ("trace_delivery_backlog_oldest_seconds", ()),
                ("trace_broker_queue_messages", (("queue", "dispatcher"),)),
            )
        ),
        timeout=60,
        what="ages, the lease lag, the sink lag and the delivery backlog growing",
    )
    assert metric("trace_deliveries", (("status", "pending"),)) == 1

    ticks = metric("trace_broker_queue_messages", (("queue", "dispatcher"),))

    # -- Part 2: thawed, the dispatcher drains, plans and reaps; every backlog empties. --
    freeze(stack, "worker-dispatcher", signal.SIGCONT)
    stack.wait_for(
        lambda: (
            Task.objects.filter(job__name="batch", status="Completed").count() == 2
            and Task.objects.filter(pk=held.pk, status="Failed").exists()
        ),
        timeout=120,
        what="the two batch tasks completed and the held one reaped (one attempt only)",
    )
    stack.wait_for(
        lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED,
        timeout=60,
        what="the delivery sent",
    )

    def drained() -> bool:
        got = scrape(Client())
        return (
            got[("trace_tasks", (*PLATFORM, ("status", "Queued")))] == 0
            and got[("trace_tasks", (*PLATFORM, ("status", "Running")))] == 0
            and got[("trace_queue_oldest_seconds", PLATFORM)] == 0
            and got[("trace_lease_lag_seconds", PLATFORM)] == 0
            and got[("trace_outbox_rows", (("kind", "wake_task"), ("status", "Pending")))] == 0
            and got[("trace_alert_sink_lag_seconds", ())] == 0
            and got[("trace_delivery_backlog_oldest_seconds", ())] == 0
            and got[("trace_deliveries", (("status", "pending"),))] == 0
            and got.get(("trace_chain_sync_backlog_blocks", backlog)) == 0
        )

    stack.wait_for(drained, timeout=120, what="every backlog drained")
    stack.wait_for(
        lambda: metric("trace_broker_queue_messages", (("queue", "dispatcher"),)) < ticks,
        what="the dispatcher's queue (beat's ticks) drained",
    )
    assert Outbox.objects.get(pk=sink.pk).status == OutboxStatus.DONE
    finished = scrape(Client())
    assert finished[("trace_worker_finished_tasks", (("status", "Completed"), ("worker", worker)))]
    assert finished[("trace_worker_task_seconds", (("worker", worker),))] >= 0

    # -- Part 3: the follower catching up: tip lag above zero, then zero. ---------------
    head = devchain.mine(node.url, 1000)
    dag_sync(org=org, yaml_text=FOLLOW_DAG, activate=True)
    lags: list[float] = []

    def caught_up() -> bool:
        got = scrape(Client())
        lag = got.get(("trace_chain_tip_lag_blocks", CHAIN))
        if lag is not None:
            lags.append(lag)
        return got.get(("trace_chain_hot_tip_block", CHAIN)) == head and lag == 0

    stack.wait_for(caught_up, timeout=180, what="the follower caught up")
    assert max(lags) > 0, lags

    # -- Part 4: a wake-up whose broker never answers ends Failed (after its tries). -----
    freeze(stack, "worker-dispatcher", signal.SIGSTOP)
    try:
        settings.TRACE_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
        settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS = 0.5
        settings.TRACE_OUTBOX_MAX_TRIES = 1
        publisher._breaker.reset()
        job_run_manual(org=org, dag_name="work", job_name="batch")
        outbox_drain()
        got = scrape(Client())
        assert got[("trace_outbox_rows", (("kind", "wake_task"), ("status", "Failed")))] == 1
        assert got[("trace_metrics_broker_up", ())] == 0
    finally:
        freeze(stack, "worker-dispatcher", signal.SIGCONT)


def _empty_publication(task: Task) -> dict:
    """What alert_evaluate's commit writes for an evaluation that matched nothing."""
    return {
        "org_id": task.org_id,
        "task_id": task.pk,
        "attempt": task.attempt,
        "dag": "work",
        "job": "hold",
        "chain_id": 31337,
        "alerts": None,
        "backtest": False,
        "deliver": True,
        "definitions": None,
        "evaluated": [],
        "seen": {},
        "batches": [],
    }
