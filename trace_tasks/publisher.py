"""Sends wake-ups to the broker. A wake-up carries only a task id; losing or repeating one is
harmless because workers claim through the database.

Publishing is bounded: a short connect/socket timeout and no retry loop, then a breaker that
skips publishing for a pause after a failure. Callers (the outbox, right after a commit) must
not block on a broker that is down; the outbox rows they leave Pending are published by the
dispatcher's drain loop once the broker is back.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from django.conf import settings

from trace_tasks.breaker import Breaker
from trace_tasks.queues import Queue

log = logging.getLogger(__name__)

RUN_TASK = "trace.run_task"
RUN_STREAM_TASK = "trace.run_stream_task"  # acknowledged on receipt; see trace_tasks.worker
DELIVER = "trace.deliver"  # the delivery pool's wake-up; see trace_tasks.delivery

_breaker = Breaker(settings.TRACE_BROKER_BREAKER_SECONDS)


class BrokerUnavailable(RuntimeError):
    """Not tried: a publish failed moments ago and the breaker's pause is not over."""


def broker_available() -> bool:
    return _breaker.allows()


def send_wake(*, task_id: int, queue: str) -> None:
    queue = Queue(queue)
    name = RUN_STREAM_TASK if queue is Queue.STREAM else RUN_TASK
    _publish(name, args=[task_id], queue=queue)


def send_delivery_wake(*, delivery_id: int) -> None:
    _publish(DELIVER, args=[delivery_id], queue=Queue.DELIVERY)


def request_chain_sync_plan() -> None:
    """Ask the dispatcher for a chain_sync planning pass now (idempotent; ticks do it too)."""
    try:
        _publish("trace.dispatch.plan_chain_syncs", args=[], queue=Queue.DISPATCHER)
    except Exception:  # only a latency shortcut: the beat tick plans anyway
        log.warning("could not request a chain_sync planning pass")


def _publish(name: str, *, args: list, queue: Queue) -> None:
    from trace_tasks.celery_app import app

    if not _breaker.allows():
        raise BrokerUnavailable(
            f"broker publish skipped for up to {_breaker.pause_seconds:.0f}s after a failure"
        )
    try:
        with _producer(app) as producer:
            # retry=False: a failure surfaces at once, so the outbox row backs off and stays
            # Pending, instead of the caller waiting inside kombu's own retry loop.
            app.send_task(name, args=args, queue=queue.value, producer=producer, retry=False)
    except Exception:
        _breaker.trip()
        raise
    _breaker.reset()


def publish_transport_options() -> dict:
    """One try, short timeouts: Redis's socket options, and for SQS botocore's (whose defaults,
    60 s reads and up to 5 tries, would hold a caller far longer than the publish timeout)."""
    timeout = settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS
    return {
        "max_retries": 0,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "client-config": {
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "retries": {"total_max_attempts": 1},
        },
    }


@contextmanager
def _producer(app):
    """A pooled producer whose connection gives up fast: one connect try and socket timeouts
    of TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS (the app's own connections would retry for
    broker_connection_timeout and wait for ever on a broker that stopped answering)."""
    from kombu import pools

    connection = app.connection_for_write(
        settings.TRACE_BROKER_URL,
        connect_timeout=settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS,
        transport_options=publish_transport_options(),
    )
    # Pools are keyed by the connection's parameters, so every call shares one pool.
    with pools.producers[connection].acquire(block=True) as producer:
        yield producer
