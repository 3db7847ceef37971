"""The worker wrapper: claim a task, heartbeat in the background, run its operator, report.

Workers are dumb: all decisions (may I run? did I finish? retry?) are fenced calls to the
task services. A worker that fails to claim runs nothing. A worker that shuts down hands its
long-running (always_on) attempts back instead of leaving their leases to expire.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError, close_old_connections, connection

from trace_operators.context import LeaseLost, PermanentError, TaskContext, TaskScope
from trace_operators.registry import operator_get
from trace_tasks.task_api import InProcessTaskApi
from trace_web.errors import StaleAttempt, TraceError
from trace_web.observability.logs import task_log_context
from trace_web.orchestration.services.tasks import (
    ClaimedTask,
    task_claim,
    task_complete,
    task_events,
    task_fail,
    task_heartbeat,
    task_release,
)

log = logging.getLogger(__name__)

# Reports (complete, fail, release) that meet an unreachable database are retried this often,
# until the lease would have run out: a brief outage must not throw away a finished attempt.
REPORT_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
RELEASE_REASON = "released: its worker shut down; the source monitor starts its successor"


class _LongRunning:
    """This process's running always_on attempts, so a shutting-down worker can stop them."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._stops: dict[int, threading.Event] = {}

    def add(self, task_id: int, stop_event: threading.Event) -> None:
        with self._lock:
            self._stops[task_id] = stop_event
            if self.stopping.is_set():
                stop_event.set()

    def discard(self, task_id: int) -> None:
        with self._lock:
            self._stops.pop(task_id, None)

    def stop_all(self) -> int:
        with self._lock:
            self.stopping.set()
            for stop_event in self._stops.values():
                stop_event.set()
            return len(self._stops)


_long_running = _LongRunning()


def worker_stopping() -> int:
    """The worker is shutting down: stop its always_on attempts now (they would never end on
    their own) and hand them back; batch attempts finish as usual. Returns how many."""
    return _long_running.stop_all()


def default_worker_id(node: str | None = None) -> str:
    """`<Celery node name, e.g. stream@host, or the host>:<pid>:<thread>`: which worker, which
    process, which pool slot."""
    return f"{node or socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass(frozen=True)
class RunOutcome:
    task_id: int
    claimed: bool
    status: str  # "not_claimed" | "completed" | "failed" | "lease_lost"


class _Watch:
    """One running attempt's lease, as the heartbeat thread keeps it."""

    def __init__(self, claimed: ClaimedTask, stop_event: threading.Event) -> None:
        self.claimed = claimed
        self.stop_event = stop_event
        self.lost = False  # the lease is gone (refused, or ran out without a heartbeat)
        # When our lease ends by our own clock; past it the reaper may hand the task to another
        # worker, so we must stop even if we could not hear that from the database.
        self.deadline = time.monotonic() + claimed.lease_seconds
        # The first heartbeat is due one interval after the claim: an attempt that ends sooner
        # sends none.
        self.due = time.monotonic() + claimed.heartbeat_seconds

    def beat(self) -> bool:
        """Extend the lease once; False when the attempt must stop (its stop event is set)."""
        task_id = self.claimed.lease.task_id
        sent_at = time.monotonic()
        try:
            task_heartbeat(lease=self.claimed.lease)
            self.deadline = sent_at + self.claimed.lease_seconds
        except StaleAttempt:
            log.warning("task %s lost its lease; stopping", task_id)
            return self._stop()
        except Exception:  # a DB blip: keep trying until the lease itself runs out
            log.exception("heartbeat failed for task %s", task_id)
            close_old_connections()
            if time.monotonic() >= self.deadline:
                log.error("task %s: lease ran out without a heartbeat; stopping", task_id)
                return self._stop()
        self.due = time.monotonic() + self.claimed.heartbeat_seconds
        return True

    def _stop(self) -> bool:
        self.lost = True
        self.stop_event.set()
        return False


class _Heartbeats:
    """One thread per process extends the leases of every attempt the process runs, each every
    heartbeat interval, so running a task costs no thread of its own and its heartbeats reuse
    one database connection. On a lost lease it sets the attempt's stop event: the operator
    stops at its next check and nothing is reported."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._changed = threading.Condition()
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None

    def watch(self, claimed: ClaimedTask, stop_event: threading.Event) -> _Watch:
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._reset()
        watch = _Watch(claimed, stop_event)
        with self._changed:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)
                self._thread.start()
            self._changed.notify()
        return watch

    def unwatch(self, watch: _Watch) -> None:
        with self._changed:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [w for w in self._watches if w.due <= now]
                if not due:
                    next_due = min((w.due for w in self._watches), default=None)
                    if next_due is None:
                        connection.close()  # idle: hold no database session meanwhile
                    self._changed.wait(None if next_due is None else next_due - now)
                    continue
            close_old_connections()  # this thread's own connection, kept across beats
            for watch in due:
                if not watch.beat():
                    self.unwatch(watch)


_heartbeats = _Heartbeats()


def _context(claimed: ClaimedTask, stop_event: threading.Event) -> TaskContext:
    task = claimed.task
    job = task.job
    return TaskContext(
        task_id=task.pk,
        attempt=task.attempt,
        org_id=task.org_id,
        dag_name=job.dag_version.name,
        job_name=job.name,
        config=job.config,
        scope=TaskScope(
            partition_key=task.partition_key,
            range_start=task.range_start,
            range_end=task.range_end,
            cursor=task.cursor,
            payload=task.payload,
            invalidation_id=task.invalidation_id,
        ),
        inputs=claimed.inputs,
        outputs_count=job.outputs,
        capability_token=claimed.capability_token,
        emit_events=lambda events: task_events(lease=claimed.lease, events=events),
        stop_event=stop_event,
        query_to_file=lambda **query: _query_to_file(claimed.capability_token, **query),
        task_api=InProcessTaskApi(claimed) if job.runtime == "udf" else None,
        cold_catalog=(lambda: _cold_catalog(task.org_id)) if job.runtime == "platform" else None,
        backfill_partitions=(
            (lambda chain_id: _backfill_partitions(task.org_id, chain_id))
            if job.runtime == "platform"
            else None
        ),
    )


def _cold_catalog(org_id: int):
    from trace_web.query.selectors import org_cold_catalog

    return org_cold_catalog(org_id=org_id)


def _backfill_partitions(org_id: int, chain_id: int) -> list:
    from trace_web.query.selectors import backfill_partitions

    return backfill_partitions(org_id=org_id, chain_id=chain_id)


def _query_to_file(token: str, **query) -> int:
    """A task's query into a file (trace_operators.duckdb_query): a query refused or failed on
    its own terms fails for good (a retry runs the same SQL over the same inputs); the
    platform's own trouble (503) is retried like any error."""
    from trace_web.query.services import task_query_to_file

    try:
        return task_query_to_file(capability_token=token, **query).file_rows
    except TraceError as exc:
        if exc.http_status < 500:
            raise PermanentError(f"{exc.code}: {exc.message}") from None
        raise


def task_run(*, task_id: int, worker_id: str | None = None) -> RunOutcome:
    """Run one wake-up for `task_id` to the end. Safe to call any number of times."""
    claimed = task_claim(task_id=task_id, worker_id=worker_id or default_worker_id())
    if claimed is None:
        log.info("task %s not claimable (already taken, finished or capped); skipping", task_id)
        return RunOutcome(task_id, claimed=False, status="not_claimed")
    task = claimed.task
    with task_log_context(
        org=task.org_id,
        dag=task.job.dag_version.name,
        job=task.job.name,
        task=task.pk,
        attempt=task.attempt,
    ):
        outcome = _run_claimed(claimed)
        log.info("task %s attempt %s: %s", task.pk, task.attempt, outcome.status)
        return outcome


def _run_claimed(claimed: ClaimedTask) -> RunOutcome:
    task_id = claimed.task.pk
    stop_event = threading.Event()
    heartbeat = _heartbeats.watch(claimed, stop_event)
    long_running = claimed.task.job.source_kind == "always_on"
    if long_running:
        _long_running.add(task_id, stop_event)
    try:
        ctx = _context(claimed, stop_event)
        operator_get(claimed.task.job.operator)(ctx)
        ctx.check_lease()
    except (LeaseLost, StaleAttempt):
        if long_running and _long_running.stopping.is_set() and not heartbeat.lost:
            # Stopped by our own shutdown, lease still ours: hand the task back.
            return _report(
                claimed,
                heartbeat,
                lambda: task_release(lease=claimed.lease, reason=RELEASE_REASON),
                "released",
            )
        return RunOutcome(task_id, claimed=True, status="lease_lost")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        retryable = not isinstance(exc, PermanentError)
        return _report(
            claimed,
            heartbeat,
            lambda: task_fail(lease=claimed.lease, error=error, retryable=retryable),
            "failed",
        )
    finally:
        if long_running:
            _long_running.discard(task_id)
        _heartbeats.unwatch(heartbeat)
    return _report(
        claimed,
        heartbeat,
        lambda: task_complete(lease=claimed.lease, outputs=ctx.outputs),
        "completed",
    )


def _report(claimed: ClaimedTask, heartbeat: _Watch, call, status: str) -> RunOutcome:
    task_id = claimed.lease.task_id
    try:
        _call_while_leased(heartbeat, call)
    except StaleAttempt:
        # Reaped or canceled while finishing: the current attempt's owner decides, not us.
        log.warning("task %s: report refused, attempt is stale", task_id)
        return RunOutcome(task_id, claimed=True, status="lease_lost")
    except TraceError as exc:
        # The completion itself was refused (bad outputs, conflicting publication): that is
        # the attempt's outcome, recorded now rather than as a lease expiry much later.
        log.error("task %s: completion refused: %s", task_id, exc.message)
        error = f"completion refused ({exc.code}): {exc.message}"
        return _report(
            claimed,
            heartbeat,
            lambda: task_fail(lease=claimed.lease, error=error, retryable=False),
            "failed",
        )
    return RunOutcome(task_id, claimed=True, status=status)


def _call_while_leased(heartbeat: _Watch, call) -> None:
    """Make a report, retrying while the database is unreachable and the lease can still be
    ours. Retrying is safe: a report that did commit before the connection broke makes the
    retry stale (StaleAttempt), never a second commit. Past the lease the reaper decides."""
    delays = iter(REPORT_RETRY_SECONDS)
    while True:
        try:
            call()
            return
        except (OperationalError, InterfaceError) as exc:
            delay = next(delays, REPORT_RETRY_SECONDS[-1])
            if time.monotonic() + delay >= heartbeat.deadline:
                raise
            log.warning(
                "task %s: report failed (%s); retrying in %.1fs",
                heartbeat.claimed.lease.task_id,
                exc,
                delay,
            )
            connection.close()  # the broken connection; the next call opens a fresh one
            time.sleep(delay)
