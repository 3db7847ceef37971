"""The Celery app: broker, queues, at-least-once delivery settings and the beat schedule of the
dispatcher loops. Messages carry only a task id; Postgres holds the truth.
"""

from __future__ import annotations

import os

from celery import Celery, platforms, signals
from kombu import Queue as KombuQueue

from trace_tasks.queues import Queue, sqs_queue_urls

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trace_web.settings")

from trace_web.lite.envfile import load_lite_env

load_lite_env()

from django.conf import settings  # noqa: E402


def broker_transport_options() -> dict:
    # Redis redelivers unacked messages after visibility_timeout; leases (not this) decide who
    # runs a task, so it only needs to exceed the longest time a message legitimately stays
    # unacked. The key prefix lets runs share a Redis db without seeing each other's keys.
    options: dict = {"visibility_timeout": 3600}
    if settings.TRACE_BROKER_KEY_PREFIX:
        options["global_keyprefix"] = settings.TRACE_BROKER_KEY_PREFIX
    if is_sqs():
        # The queues Terraform made (each with its dead-letter queue), by URL: kombu neither
        # lists nor creates queues, so the task roles need no such rights.
        options["region"] = settings.TRACE_SQS_REGION
        options["predefined_queues"] = {
            name: {"url": url}
            for name, url in sqs_queue_urls(settings.TRACE_SQS_QUEUE_URLS).items()
        }
    return options


def is_sqs() -> bool:
    return settings.TRACE_BROKER_URL.startswith("sqs://")


app = Celery(
    "trace", include=["trace_tasks.worker", "trace_tasks.delivery", "trace_tasks.dispatcher"]
)

app.conf.update(
    broker_url=settings.TRACE_BROKER_URL,
    # Nothing reads task results: state lives in Postgres, so no result backend.
    result_backend=None,
    task_ignore_result=True,
    task_queues=[KombuQueue(q.value, routing_key=q.value) for q in Queue],
    task_default_queue=Queue.DISPATCHER.value,
    task_create_missing_queues=False,
    # At-least-once: a message is acknowledged only after its handler returns (late acks) and
    # is given back to the broker if the worker process dies mid-run (reject on worker lost).
    # Redelivery is harmless because a wake-up only asks "claim task N": the claim is an atomic
    # conditional UPDATE, so a duplicate finds the task already Running and does nothing.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A broker blip must not cancel running attempts (Celery 6 will default to cancelling):
    # they keep their leases through it, and their redelivered wake-ups claim nothing.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    # Prefetch one message per process: a long operator does not sit on wake-ups that an idle
    # worker could take, and a killed worker strands at most one unacked message per process.
    worker_prefetch_multiplier=1,
    broker_transport_options=broker_transport_options(),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    # Remote control needs a per-worker broadcast queue, which predefined SQS queues cannot
    # have; nothing in Trace uses it (state is in Postgres).
    worker_enable_remote_control=not is_sqs(),
)


# Liveness: the worker touches a file while its consumer consumes (trace worker-alive).
from trace_tasks.liveness import LivenessProbe  # noqa: E402

app.steps["consumer"].add(LivenessProbe)


# Celery's Django fixup closes every database connection before and after each task unless
# this is set, which costs a new Postgres connection (and its authentication) per wake-up. Our
# tasks instead run Django's own connection cycle (trace_tasks.decorators.trace_task): reuse while
# healthy and younger than CONN_MAX_AGE. The fixup still closes them every 2 x this many tasks.
app.conf["CELERY_DB_REUSE_MAX"] = 1000


def _loop(name: str) -> dict:
    tick = settings.TRACE_DISPATCH_TICK_SECONDS
    # Expire stale ticks: if the dispatcher is down, a backlog of old ticks must not pile up.
    return {
        "task": name,
        "schedule": tick,
        "options": {"queue": Queue.DISPATCHER.value, "expires": max(tick * 5, 5.0)},
    }


app.conf.beat_schedule = {
    "outbox-drain": _loop("trace.dispatch.outbox_drain"),
    "retry-scheduler": _loop("trace.dispatch.retry_due"),
    "lease-reaper": _loop("trace.dispatch.reap_leases"),
    "source-monitor": _loop("trace.dispatch.monitor_sources"),
    "invalidation-scanner": _loop("trace.dispatch.scan_invalidations"),
    "chain-sync-planner": _loop("trace.dispatch.plan_chain_syncs"),
    "delivery-scheduler": _loop("trace.dispatch.deliveries"),
    "state-pruner": {
        "task": "trace.dispatch.prune_state",
        "schedule": settings.TRACE_PRUNE_EVERY_SECONDS,
        "options": {"queue": Queue.DISPATCHER.value, "expires": settings.TRACE_PRUNE_EVERY_SECONDS},
    },
}


# Beat's SIGTERM/SIGINT: Celery's handler saves the schedule inside the handler, which with
# psycopg 3 deadlocks when the signal lands while the main thread's query runs (the handler's
# query waits for the connection lock that the interrupted query holds), and beat hangs until
# killed. Raising SystemExit alone is enough: psycopg cancels the interrupted query, and
# beat.Service.start saves the schedule in its `finally`, after the stack has unwound.
@signals.beat_init.connect
def _beat_exit_on_term(**_kwargs) -> None:
    def _exit(_signum, _frame) -> None:
        raise SystemExit()

    platforms.signals.update(SIGTERM=_exit, SIGINT=_exit)
