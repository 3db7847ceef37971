"""`trace smoke`: is this deployment wired up? Each check talks to one real dependency (the two
databases, the broker, the object store, optionally SNS) and reports ok or why not, timed.

The same checks run in CI against Postgres, Redis and moto, and in an account against RDS, SQS,
S3 and SNS. A check never raises: every failure becomes a one-line reason with secrets cut out.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from queue import Empty

from django.conf import settings

SMOKE_PREFIX = "_smoke/"
SQS_SMOKE_QUEUE = "trace-smoke"


class SmokeFailure(Exception):
    """A check found its dependency answering, but wrong (unapplied migrations, a lost object)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "FAIL" or "skip"
    seconds: float
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        text = f"{self.status:<4} {self.name:<12} {self.seconds:7.3f}s"
        return f"{text}  {self.detail}" if self.detail else text


class Skip(Exception):
    """The check does not apply to this configuration (said, not failed)."""


def check_state_db(timeout: float) -> str:
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections["default"]
    # Before the first connect: a host that drops packets fails within the timeout too.
    connection.settings_dict.setdefault("OPTIONS", {})["connect_timeout"] = max(1, round(timeout))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        first = plan[0][0]
        raise SmokeFailure(
            f"{len(plan)} migration(s) not applied (first {first.app_label}.{first.name}): "
            "run `trace migrate`"
        )
    return "SELECT 1, migrations applied"


def check_data_db(timeout: float) -> str:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are not results
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from trace_chain.db import alembic_config, create_data_engine

    engine = create_data_engine(
        poolclass=sa.pool.NullPool, connect_args={"connect_timeout": max(1, round(timeout))}
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    if current != heads:
        raise SmokeFailure(
            f"at revision {', '.join(sorted(current)) or 'none'}, head is "
            f"{', '.join(sorted(heads))}: run `trace data-migrate`"
        )
    return "SELECT 1, at the Alembic head"


def check_broker(timeout: float) -> str:
    """A message sent and received back on a queue no worker reads: a temporary one on Redis
    (deleted after), the predefined smoke queue on SQS (the task roles cannot create queues)."""
    from kombu import Connection

    from trace_tasks.celery_app import broker_transport_options, is_sqs

    options = broker_transport_options()
    if is_sqs():
        if not settings.TRACE_SQS_SMOKE_QUEUE_URL:
            raise SmokeFailure("TRACE_SQS_SMOKE_QUEUE_URL is not set (terraform: smoke_queue_url)")
        name = SQS_SMOKE_QUEUE
        options["predefined_queues"][name] = {"url": settings.TRACE_SQS_SMOKE_QUEUE_URL}
        options["wait_time_seconds"] = 1  # short polls until the deadline below
        options["client-config"] = {
            "retries": {"total_max_attempts": 1},
            "connect_timeout": timeout,
            "read_timeout": timeout,
        }
    else:
        name = f"trace-smoke-{uuid.uuid4().hex[:12]}"
        options.update(max_retries=0, socket_connect_timeout=timeout, socket_timeout=timeout)
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    with Connection(
        settings.TRACE_BROKER_URL, transport_options=options, connect_timeout=timeout
    ) as conn:
        if not is_sqs():
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        queue = conn.SimpleQueue(name, no_ack=False)
        try:
            queue.put({"smoke": token}, retry=False)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SmokeFailure(f"sent to {name} but not received back in {timeout:g}s")
                try:
                    message = queue.get(block=True, timeout=remaining)
                except Empty:
                    continue
                message.ack()
                if message.payload == {"smoke": token}:  # an older run's leftover is dropped
                    break
        finally:
            if not is_sqs():
                queue.queue.delete()
            queue.close()
    return f"sent and received on {name}"


def check_object_store(timeout: float) -> str:
    from trace_chain.object_store import S3ObjectStore, object_store_from_url

    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    if isinstance(store, S3ObjectStore):
        store.max_attempts = 0  # botocore's retries after the first try: none
    prefix = f"{SMOKE_PREFIX}{uuid.uuid4().hex}/"
    key, payload = prefix + "probe.bin", uuid.uuid4().bytes
    store.put_bytes(payload, key)
    try:
        if store.get_bytes(key) != payload:
            raise SmokeFailure(f"{store.uri(key)} read back different bytes")
    finally:
        store.delete_prefix(prefix)
    if store.exists(key):
        raise SmokeFailure(f"{store.uri(key)} still there after delete")
    return f"wrote, read and deleted {store.uri(key)}"


def check_sns(timeout: float) -> str:
    topic = settings.TRACE_SMOKE_SNS_TOPIC_ARN
    if not topic:
        raise Skip("TRACE_SMOKE_SNS_TOPIC_ARN not set")
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sns",
        endpoint_url=settings.TRACE_SNS_ENDPOINT_URL or None,
        region_name=settings.TRACE_SNS_REGION,
        config=Config(
            retries={"total_max_attempts": 1}, connect_timeout=timeout, read_timeout=timeout
        ),
    )
    answer = client.publish(TopicArn=topic, Subject="trace smoke", Message="trace smoke test")
    return f"published {answer['MessageId']} to {topic}"


CHECKS: dict[str, Callable[[float], str]] = {
    "state-db": check_state_db,
    "data-db": check_data_db,
    "broker": check_broker,
    "object-store": check_object_store,
    "sns": check_sns,
}

_URL_SECRET = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def failure_reason(exc: BaseException) -> str:
    """One line: the exception's type and message, any URL's password replaced by ***."""
    text = " ".join(str(exc).split()) or "(no message)"
    if not isinstance(exc, SmokeFailure):
        text = f"{type(exc).__name__}: {text}"
    return _URL_SECRET.sub(r"\1***@", text)[:500]


def smoke_checks(
    *, only: Iterable[str] | None = None, timeout: float = 10.0
) -> Iterator[CheckResult]:
    """Run the named checks (default all, in CHECKS' order), yielding each result as it is
    known. Unknown names raise ValueError before anything runs."""
    names = list(CHECKS) if only is None else list(only)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known: {', '.join(CHECKS)}")
    for name in names:
        started = time.perf_counter()
        try:
            detail, status = CHECKS[name](timeout), "ok"
        except Skip as exc:
            detail, status = str(exc), "skip"
        except Exception as exc:
            detail, status = failure_reason(exc), "FAIL"
        yield CheckResult(name, status, time.perf_counter() - started, detail)
