"""Benchmark: end-to-end task throughput through Trace's full lease protocol
(create + outbox -> enqueue -> claim -> heartbeat thread -> complete) against plain Celery no-op
tasks on the same broker, same worker settings, same run. Prints medians and the ratio, then
dispatch latency one task at a time (p50/p95): running a job -> its operator starting, beside
plain Celery's apply_async -> task start.

    python bench/task_throughput.py [--tasks 500] [--rounds 3] [--concurrency 2]
                                    [--latency-samples 100]

Uses the Postgres/Redis the environment points at, else loopback, else embedded ones.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import platform, start_celery, stop, wait_for_workers, wait_until

BENCH_DAG = """
name: bench
jobs:
  - {name: work, activation: manual, operator: noop, outputs: 0}
"""


def run_celery_baseline(n: int) -> float:
    import redis
    from django.conf import settings

    from bench.celery_noop import COUNTER_KEY, noop

    client = redis.Redis.from_url(settings.TRACE_BROKER_URL)
    client.delete(COUNTER_KEY)
    start = time.perf_counter()
    for _ in range(n):
        noop.apply_async(queue="platform")
    wait_until(lambda: int(client.get(COUNTER_KEY) or 0) >= n)
    return n / (time.perf_counter() - start)


def run_trace(n: int, job) -> float:
    from trace_web.orchestration.models import Task, TaskStatus
    from trace_web.orchestration.services.tasks import task_create

    start = time.perf_counter()
    ids = [task_create(job=job, trigger="manual")[0].pk for _ in range(n)]
    done = Task.objects.filter(pk__in=ids, status=TaskStatus.COMPLETED)
    wait_until(lambda: done.count() >= n)
    return n / (time.perf_counter() - start)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def celery_latencies(n: int) -> list[float]:
    """apply_async -> the no-op task's first line, one at a time, in ms."""
    import redis
    from django.conf import settings

    from bench.celery_noop import STARTS_KEY, noop_stamp

    client = redis.Redis.from_url(settings.TRACE_BROKER_URL)
    client.delete(STARTS_KEY)
    latencies = []
    for i in range(n):
        sent = time.time()
        noop_stamp.apply_async(queue="platform")
        wait_until(lambda i=i: client.llen(STARTS_KEY) > i, interval=0.001)
        latencies.append((float(client.lindex(STARTS_KEY, i)) - sent) * 1000)
    return latencies


def trace_latencies(n: int, org) -> list[float]:
    """Running a job (job_run_manual, what POST .../runs calls) -> its claim, right before the
    operator starts (started_at), one at a time, in ms: the wake-up leaves right after the
    commit, so no dispatcher tick is on this path."""
    from django.utils import timezone

    from trace_web.orchestration.models import Task
    from trace_web.orchestration.services.sources import job_run_manual

    latencies = []
    for _ in range(n):
        sent = timezone.now()
        task = job_run_manual(org=org, dag_name="bench", job_name="work")
        started = Task.objects.filter(pk=task.pk, started_at__isnull=False)
        wait_until(started.exists, interval=0.001)
        latencies.append((started.get().started_at - sent).total_seconds() * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=100)
    args = parser.parse_args()

    home = platform()
    from trace_web.orchestration.models import Outbox, Task
    from trace_web.orchestration.selectors import active_job
    from trace_web.orchestration.services.dags import dag_sync
    from trace_web.orgs.services import org_create

    org = org_create(slug="bench")
    dag_sync(org=org, activate=True, yaml_text=BENCH_DAG)
    job = active_job(org_id=org.pk, dag_name="bench", job_name="work")
    Task.objects.filter(org=org).delete()
    Outbox.objects.all().delete()
    worker = start_celery(
        "worker",
        ["worker", "-Q", "platform", "-c", str(args.concurrency), "--include", "bench.celery_noop",
         "--without-mingle", "--without-gossip", "-l", "WARNING", "-n", "bench@%h"],
        home,
    )  # fmt: skip
    wait_for_workers()
    try:
        run_celery_baseline(min(50, args.tasks))  # warm both paths up
        run_trace(min(50, args.tasks), job)
        celery_rates, trace_rates = [], []
        for _ in range(args.rounds):
            celery_rates.append(run_celery_baseline(args.tasks))
            trace_rates.append(run_trace(args.tasks, job))
        celery_lat = celery_latencies(args.latency_samples)
        trace_lat = trace_latencies(args.latency_samples, org)
    finally:
        stop([worker])
    celery_median = statistics.median(celery_rates)
    trace_median = statistics.median(trace_rates)
    print(f"tasks per round: {args.tasks}, rounds: {args.rounds}, concurrency: {args.concurrency}")
    print(f"{'path':<44}{'median tasks/s':>16}  rounds")
    for label, median, rates in (
        ("plain Celery no-op (baseline)", celery_median, celery_rates),
        ("Trace lease protocol (create..complete)", trace_median, trace_rates),
    ):
        print(f"{label:<44}{median:>16.1f}  {[round(r) for r in rates]}")
    print(f"ratio Trace / Celery: {trace_median / celery_median:.3f}")
    print(f"\ndispatch latency, one at a time ({args.latency_samples} samples), ms")
    print(f"{'path':<44}{'p50':>8}{'p95':>8}")
    for label, values in (
        ("plain Celery: apply_async -> task start", celery_lat),
        ("Trace: run a job -> operator start", trace_lat),
    ):
        print(f"{label:<44}{percentile(values, 0.5):>8.1f}{percentile(values, 0.95):>8.1f}")


if __name__ == "__main__":
    main()
