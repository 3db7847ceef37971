"""The backlogs of TRACE.md section 8 as Prometheus gauges, read from the state and data
databases at each scrape (a few aggregate queries; nothing is kept in a process, so every web
process answers the same whatever worker did the work):

- tasks per queue and status, the age of the oldest due Queued task per queue, and the lease
  lag (how long the most overdue Running task's lease has been expired: the reaper's delay);
- outbox rows Pending and Failed per kind, the age of the oldest due Pending row per kind, and
  the alert sink's lag (the oldest due Pending `alert_sink` row);
- deliveries per status, the age of the oldest due pending delivery, dead letters pending;
- per chain, the head the follower last saw, the hot tip, the tip lag (head - hot tip) and
  how long ago the follower last reported (left out, with `trace_metrics_data_db_up` 0, when
  the data DB does not answer: the state DB's gauges still come);
- per chain_sync stream, the blocks left to its plan target and its failed ranges;
- per worker (Celery node), the tasks it is running and the tasks it finished in the last
  WORKER_WINDOW_SECONDS with their run time (from the task table: a worker process needs no
  metrics server of its own, and a killed one is still counted by what it left);
- per queue, the messages the broker holds (`trace_metrics_broker_up` 0 when it does not
  answer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trace_tasks.queues import Queue, queue_for

log = logging.getLogger(__name__)

WORKER_WINDOW_SECONDS = 300


class BacklogCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from _tasks(now)
        yield from _outbox(now)
        yield from _alerting(now)
        yield from _chains(now)
        yield from _chain_syncs()
        yield from _workers(now)
        yield from _broker()


def _age(now: datetime, since: datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


def _tasks(now: datetime) -> Iterator[Metric]:
    from trace_web.orchestration.models import Task, TaskStatus

    depth = GaugeMetricFamily(
        "trace_tasks", "Tasks not finished, per queue and status", labels=["queue", "status"]
    )
    oldest = GaugeMetricFamily(
        "trace_queue_oldest_seconds",
        "Age of the oldest due Queued task per queue (0 when none)",
        labels=["queue"],
    )
    lag = GaugeMetricFamily(
        "trace_lease_lag_seconds",
        "How long the most overdue Running task's lease has been expired (0 when none)",
        labels=["queue"],
    )
    counts: dict[tuple[str, str], int] = {}
    ages: dict[str, float] = {}
    lags: dict[str, float] = {}
    rows = (
        Task.objects.filter(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING])
        .values("status", "job__runtime", "job__source_kind")
        .annotate(
            n=Count("id"),
            due_since=Min(
                Coalesce("next_retry_at", "created_at"),
                filter=Q(status=TaskStatus.QUEUED)
                & (Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now)),
            ),
            expired_since=Min(
                "lease_expires_at",
                filter=Q(status=TaskStatus.RUNNING, lease_expires_at__lt=now),
            ),
        )
    )
    for row in rows:
        queue = queue_for(runtime=row["job__runtime"], source_kind=row["job__source_kind"])
        key = (queue.value, row["status"])
        counts[key] = counts.get(key, 0) + row["n"]
        ages[queue.value] = max(ages.get(queue.value, 0.0), _age(now, row["due_since"]))
        lags[queue.value] = max(lags.get(queue.value, 0.0), _age(now, row["expired_since"]))
    for queue in Queue:
        if queue is Queue.DISPATCHER:
            continue  # control-plane loops: no tasks of their own
        for status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            depth.add_metric([queue.value, status], counts.get((queue.value, status), 0))
        oldest.add_metric([queue.value], ages.get(queue.value, 0.0))
        lag.add_metric([queue.value], lags.get(queue.value, 0.0))
    yield from (depth, oldest, lag)


def _outbox(now: datetime) -> Iterator[Metric]:
    from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus

    rows_metric = GaugeMetricFamily(
        "trace_outbox_rows", "Outbox rows Pending or Failed, per kind", labels=["kind", "status"]
    )
    oldest = GaugeMetricFamily(
        "trace_outbox_oldest_pending_seconds",
        "Age of the oldest due Pending outbox row per kind (0 when none)",
        labels=["kind"],
    )
    sink_lag = GaugeMetricFamily(
        "trace_alert_sink_lag_seconds",
        "Age of the oldest alert publication not yet sunk (0 when none)",
    )
    found = {
        (r["kind"], r["status"]): r
        for r in Outbox.objects.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED])
        .values("kind", "status")
        .annotate(n=Count("id"), since=Min("created_at", filter=Q(available_at__lte=now)))
    }
    for kind in OutboxKind:
        for status in (OutboxStatus.PENDING, OutboxStatus.FAILED):
            rows_metric.add_metric([kind, status], found.get((kind, status), {}).get("n", 0))
        since = found.get((kind, OutboxStatus.PENDING), {}).get("since")
        oldest.add_metric([kind], _age(now, since))
        if kind == OutboxKind.ALERT_SINK:
            sink_lag.add_metric([], _age(now, since))
    yield from (rows_metric, oldest, sink_lag)


def _alerting(now: datetime) -> Iterator[Metric]:
    from trace_web.alerts.models import DeadLetterBatch, DeadLetterStatus, Delivery, DeliveryStatus

    per_status = GaugeMetricFamily(
        "trace_deliveries", "Alert deliveries not delivered, per status", labels=["status"]
    )
    found = dict(
        Delivery.objects.exclude(status=DeliveryStatus.DELIVERED)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    for status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED):
        per_status.add_metric([status], found.get(status, 0))
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    backlog = GaugeMetricFamily(
        "trace_delivery_backlog_oldest_seconds",
        "How long the most overdue pending delivery has been due (0 when none)",
    )
    backlog.add_metric([], _age(now, due.aggregate(m=Min("next_attempt_at"))["m"]))
    letters = GaugeMetricFamily(
        "trace_alert_dead_letters_pending", "Refused alert publications waiting for a replay"
    )
    letters.add_metric([], DeadLetterBatch.objects.filter(status=DeadLetterStatus.PENDING).count())
    yield from (per_status, backlog, letters)


def _chains(now: datetime) -> Iterator[Metric]:
    import sqlalchemy as sa

    from trace_chain.db import data_engine
    from trace_chain.hot_schema import hot_chain_status

    chain = ["chain_id"]
    head = GaugeMetricFamily("trace_chain_head_block", "The head last seen", labels=chain)
    tip = GaugeMetricFamily("trace_chain_hot_tip_block", "The highest hot block", labels=chain)
    lag = GaugeMetricFamily(
        "trace_chain_tip_lag_blocks", "Head minus hot tip, as last reported", labels=["chain_id"]
    )
    age = GaugeMetricFamily(
        "trace_chain_status_age_seconds",
        "How long ago the follower last reported (its liveness)",
        labels=["chain_id"],
    )
    up = GaugeMetricFamily(
        "trace_metrics_data_db_up", "1 when the data DB answered this scrape, else 0"
    )
    columns = hot_chain_status.c
    query = sa.select(columns.chain_id, columns.head_block, columns.tip_block, columns.updated_at)
    try:
        with data_engine().connect() as conn:
            rows = conn.execute(query.order_by(columns.chain_id)).all()
    except sa.exc.SQLAlchemyError:
        log.warning("metrics: the data DB did not answer; chain gauges left out", exc_info=True)
        rows = []
        up.add_metric([], 0)
    else:
        up.add_metric([], 1)
    yield up
    for chain_id, head_block, tip_block, updated_at in rows:
        label = [str(chain_id)]
        if head_block is not None:
            head.add_metric(label, head_block)
        if tip_block is not None:
            tip.add_metric(label, tip_block)
        if head_block is not None and tip_block is not None:
            lag.add_metric(label, max(head_block - tip_block, 0))
        age.add_metric(label, _age(now, updated_at))
    yield from (head, tip, lag, age)


def _chain_syncs() -> Iterator[Metric]:
    from trace_web.chain_sync.models import ChainSyncStream, RangeStatus
    from trace_web.chain_sync.selectors import chain_sync_plan_target

    labels = ["org", "chain_sync", "dataset"]
    backlog = GaugeMetricFamily(
        "trace_chain_sync_backlog_blocks",
        "Blocks between a stream's cursor and its plan target (unknown target: not shown)",
        labels=labels,
    )
    failed = GaugeMetricFamily(
        "trace_chain_sync_failed_ranges", "Ranges failed for good, per stream", labels=labels
    )
    streams = (
        ChainSyncStream.objects.filter(chain_sync__enabled=True)
        .select_related("chain_sync__org")
        .annotate(failed=Count("ranges", filter=Q(ranges__status=RangeStatus.FAILED)))
        .order_by("chain_sync__org__slug", "chain_sync__name", "dataset")
    )
    for stream in streams:
        sync = stream.chain_sync
        label = [sync.org.slug, sync.name, stream.dataset]
        target = chain_sync_plan_target(sync=sync)
        if target is not None:
            backlog.add_metric(label, max(target - stream.cursor, 0))
        failed.add_metric(label, stream.failed)
    yield from (backlog, failed)


def worker_name(worker_id: str) -> str:
    """The Celery node of a task's `worker_id` (`<node>:<pid>:<thread>`): one series per worker,
    not per process, so restarts add no series."""
    parts = worker_id.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else worker_id


def _workers(now: datetime) -> Iterator[Metric]:
    from trace_web.orchestration.models import Task, TaskStatus

    running = GaugeMetricFamily(
        "trace_worker_running_tasks", "Tasks Running, per worker (Celery node)", labels=["worker"]
    )
    finished = GaugeMetricFamily(
        "trace_worker_finished_tasks",
        f"Tasks finished in the last {WORKER_WINDOW_SECONDS} s, per worker and final status",
        labels=["worker", "status"],
    )
    seconds = GaugeMetricFamily(
        "trace_worker_task_seconds",
        f"Run time (start to finish) of the tasks a worker finished in the last "
        f"{WORKER_WINDOW_SECONDS} s, summed",
        labels=["worker"],
    )
    counts: dict[str, int] = {}
    for worker_id, n in (
        Task.objects.filter(status=TaskStatus.RUNNING)
        .values_list("worker_id")
        .annotate(n=Count("id"))
    ):
        name = worker_name(worker_id)
        counts[name] = counts.get(name, 0) + n
    for name, n in sorted(counts.items()):
        running.add_metric([name], n)
    done: dict[tuple[str, str], int] = {}
    spent: dict[str, float] = {}
    since = now - timedelta(seconds=WORKER_WINDOW_SECONDS)
    for worker_id, status, started_at, finished_at in Task.objects.filter(
        finished_at__gte=since,
        status__in=[TaskStatus.COMPLETED, TaskStatus.FAILED],
    ).values_list("worker_id", "status", "started_at", "finished_at"):
        if not worker_id:
            continue  # failed or canceled before any worker claimed it
        name = worker_name(worker_id)
        done[(name, status)] = done.get((name, status), 0) + 1
        if started_at is not None:
            spent[name] = spent.get(name, 0.0) + _age(finished_at, started_at)
    for (name, status), n in sorted(done.items()):
        finished.add_metric([name, status], n)
    for name, total in sorted(spent.items()):
        seconds.add_metric([name], total)
    yield from (running, finished, seconds)


def _broker() -> Iterator[Metric]:
    from trace_tasks.broker_stats import queue_depths

    depth = GaugeMetricFamily(
        "trace_broker_queue_messages",
        "Messages waiting in the broker per queue (sent, not yet taken by a worker)",
        labels=["queue"],
    )
    up = GaugeMetricFamily("trace_metrics_broker_up", "1 when the broker answered this scrape")
    try:
        depths = queue_depths()
    except Exception:  # kombu raises the transport's own errors (redis, botocore, socket)
        log.warning("metrics: the broker did not answer; queue depths left out", exc_info=True)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    for name, n in depths.items():
        depth.add_metric([name], n)
    yield from (up, depth)
