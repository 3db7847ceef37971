"""Benchmark: alert delivery through the delivery pool. A burst of N deliveries, each committed
with its wake-up (as routing writes them), sent by a real Celery worker on the `delivery`
queue to a webhook receiver on loopback: throughput (deliveries/s, from the commit of N
deliveries at once to the last arrival) and latency one delivery at a time (commit -> webhook
received, p50/p95).

    python bench/delivery.py [--deliveries 500] [--concurrency 2] [--latency-samples 200]

Uses the Postgres/Redis the environment points at, else loopback, else embedded ones. The
channel has no rate limit (0), so the figures are the pool's, not a limit's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Databases of its own by default: this bench recreates its state DB, and must not drop the
# one another bench (alert_latency, task_throughput) is running on, nor share its broker db.
os.environ.setdefault("TRACE_BENCH_STATE_DB", "trace_bench_delivery_state")
os.environ.setdefault("TRACE_BENCH_BROKER_DB", "11")

from common import platform, start_celery, stop, wait_for_workers, wait_until

ARRIVALS: dict[int, float] = {}
_lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with _lock:
            ARRIVALS[int(self.headers["Idempotency-Key"])] = time.time()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def routed(events, channel, count: int = 1) -> tuple[list[int], float]:
    """`count` deliveries, each with its wake-up, in one transaction, as the sink routes a
    publication's events; the wake-ups go out right after the commit (the outbox fast path).
    Returns the ids and the commit time."""
    from django.db import transaction
    from django.utils import timezone

    from trace_web.alerts.models import Delivery
    from trace_web.orchestration.models import OutboxKind
    from trace_web.orchestration.services.outbox import outbox_add

    ids = []
    committed = [0.0]
    with transaction.atomic():
        for _ in range(count):
            event = next(events)
            delivery = Delivery.objects.create(
                org_id=event.org_id, event=event, channel=channel, next_attempt_at=timezone.now()
            )
            outbox_add(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": delivery.pk})
            ids.append(delivery.pk)
        # Runs first among the on-commit callbacks, before the wake-ups are published.
        transaction.on_commit(lambda: committed.__setitem__(0, time.time()))
    return ids, committed[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()

    os.environ["TRACE_DELIVERY_ALLOW_PRIVATE"] = "true"  # the receiver is on loopback
    home = platform()
    from django.utils import timezone

    from trace_web.alerts.models import AlertDefinition, AlertEvent, Channel, Delivery
    from trace_web.orgs.services import org_create

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    org = org_create(slug="bench")
    channel = Channel.objects.create(
        org=org,
        name="bench",
        kind="webhook",
        target=f"http://127.0.0.1:{server.server_port}/hook",
        secret="bench-secret",  # noqa: S106 - a bench channel's signing key
        rate_limit_per_minute=0,
    )
    definition = AlertDefinition.objects.create(
        org=org, name="bench", chain_id=31337, condition={"match": "transaction"}
    )
    total = args.deliveries + args.latency_samples
    AlertEvent.objects.bulk_create(
        AlertEvent(
            org=org,
            definition=definition,
            dedupe_key=f"d{i}",
            match_key=f"m{i}",
            chain_id=31337,
            block_number=i,
            block_hash="0x" + f"{i:064x}",
            tx_hash="0x" + f"{i:064x}",
            event_time=timezone.now(),
            payload={"value": str(10**18 + i)},
            producer_task_id=1,
            producer_attempt=1,
        )
        for i in range(total)
    )
    events = iter(AlertEvent.objects.filter(definition=definition).order_by("id"))
    worker = start_celery(
        "worker",
        ["worker", "-Q", "delivery", "-c", str(args.concurrency), "--without-mingle",
         "--without-gossip", "-l", "WARNING", "-n", "bench-delivery@%h"],
        home,
    )  # fmt: skip
    wait_for_workers()
    try:
        burst, start = routed(events, channel, args.deliveries)
        wait_until(lambda: all(i in ARRIVALS for i in burst))
        elapsed = max(ARRIVALS[i] for i in burst) - start
        latencies = []
        for _ in range(args.latency_samples):
            [delivery_id], committed = routed(events, channel)
            wait_until(lambda: delivery_id in ARRIVALS, interval=0.001)  # noqa: B023
            latencies.append(ARRIVALS[delivery_id] - committed)
    finally:
        stop([worker])
        server.shutdown()
    delivered = Delivery.objects.filter(org=org, status="delivered").count()
    print(f"deliveries: {args.deliveries} committed at once, concurrency {args.concurrency}")
    print(f"throughput: {args.deliveries / elapsed:.1f} deliveries/s ({elapsed:.2f} s)")
    print(
        f"latency commit -> webhook received ({len(latencies)} one at a time): "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    print(f"rows delivered: {delivered} of {total}; arrivals: {len(ARRIVALS)}")


if __name__ == "__main__":
    main()
