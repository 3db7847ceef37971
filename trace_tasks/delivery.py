"""The `delivery` pool's task: a wake-up carrying only a delivery id. The lease decides who
sends, so a duplicate or late wake-up does nothing; a lost one is re-sent by the dispatcher's
due loop (trace.dispatch.deliveries)."""

from __future__ import annotations

from trace_tasks.decorators import trace_task
from trace_tasks.publisher import DELIVER


@trace_task(DELIVER, bind=True)
def deliver(self, delivery_id: int) -> str:
    from trace_tasks.runner import default_worker_id
    from trace_web.alerts.delivery import delivery_attempt

    worker_id = default_worker_id(self.request.hostname)
    return delivery_attempt(delivery_id=int(delivery_id), worker_id=worker_id)
