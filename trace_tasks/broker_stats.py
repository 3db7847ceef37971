"""How many messages each queue holds as the broker sees it (Redis list lengths, SQS's
ApproximateNumberOfMessages): the wake-ups sent and not yet taken by a worker. The platform's
own view of its queues is the task table; this one shows a broker that is not being drained."""

from __future__ import annotations

from django.conf import settings

from trace_tasks.queues import Queue


def queue_depths() -> dict[str, int]:
    """Messages waiting per queue. One connection try with the publish timeouts, so a broker
    that does not answer costs a scrape at most a few seconds; raises what kombu raises."""
    from trace_tasks.celery_app import app
    from trace_tasks.publisher import publish_transport_options

    connection = app.connection_for_read(
        settings.TRACE_BROKER_URL,
        connect_timeout=settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS,
        transport_options=publish_transport_options(),
    )
    with connection:
        channel = connection.default_channel
        # Not passive: Redis has no key for an empty queue, so a passive declare would refuse
        # it. Declaring our own queues creates nothing (Redis keys appear with messages; SQS
        # queues are predefined by URL).
        return {
            queue.value: channel.queue_declare(queue=queue.value).message_count for queue in Queue
        }
