"""The baseline of the throughput benchmark: a plain Celery no-op task that only counts itself
in Redis (the cheapest way to know when all of them have run)."""

from trace_tasks.celery_app import app

COUNTER_KEY = "bench:noop:done"
STARTS_KEY = "bench:noop:starts"  # when each stamping no-op started (time.time())


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    import redis
    from django.conf import settings

    client = getattr(noop, "_redis", None) or redis.Redis.from_url(settings.TRACE_BROKER_URL)
    noop._redis = client
    client.incr(COUNTER_KEY)


@app.task(name="bench.noop_stamp", ignore_result=True)
def noop_stamp() -> None:
    """The latency baseline: records when it started."""
    import time

    import redis
    from django.conf import settings

    client = getattr(noop_stamp, "_redis", None) or redis.Redis.from_url(settings.TRACE_BROKER_URL)
    noop_stamp._redis = client
    client.rpush(STARTS_KEY, repr(time.time()))
