"""What every failure drill asserts once the fault is over: no lost work, no duplicate
execution, no stale commit, and nothing left stuck, read from the state DB."""

from __future__ import annotations

import itertools
from collections import Counter

from trace_web.datasets.models import PartitionVersion
from trace_web.orchestration.models import (
    Outbox,
    OutboxKind,
    OutboxStatus,
    Task,
    TaskStatus,
    TaskTransition,
)

# An always_on noop source emitting an event a second (for ever, as a follower does), a
# reactive consumer per event, and a manual batch job.
DRILL_DAG = """
name: drill
jobs:
  - name: source
    activation: source
    source: {kind: always_on}
    operator: noop
    outputs: 1
    update_strategy: replace
    config: {emit_count: 100000, emit_every_seconds: 1}
  - name: consume
    activation: reactive
    operator: noop
    outputs: 0
    inputs: [{from: {job: source, output: 0}}]
  - name: batch
    activation: manual
    operator: noop
    outputs: 0
    config: {sleep_seconds: %(batch_seconds)s}
"""


def drill_dag(batch_seconds: float = 0.5) -> str:
    return DRILL_DAG % {"batch_seconds": batch_seconds}


def assert_one_execution_per_attempt(tasks) -> None:
    """Each attempt of each task was claimed (Running) at most once, and a finished task's
    every attempt exactly once."""
    for task in tasks:
        runs = Counter(
            TaskTransition.objects.filter(task=task, to_status="Running").values_list(
                "attempt", flat=True
            )
        )
        assert all(count == 1 for count in runs.values()), (task.pk, runs)
        if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            assert sorted(runs) == list(range(1, task.attempt + 1)), (task.pk, runs)


def assert_never_two_running(tasks) -> None:
    """From the recorded transitions: no two attempts of these tasks ran at once."""
    intervals = []
    for task in tasks:
        transitions = list(task.transitions.order_by("id"))
        for current, following in zip(transitions, [*transitions[1:], None], strict=True):
            if current.to_status == "Running":
                intervals.append((current.at, following.at if following else None))
    intervals.sort(key=lambda interval: interval[0])
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        assert end is not None and end <= next_start, intervals


def assert_no_stale_commit() -> None:
    """Every committed partition names an attempt that was claimed (a commit of an attempt
    that never held a lease would have slipped past the fence)."""
    for task_id, attempt in PartitionVersion.objects.values_list("task_id", "attempt"):
        assert TaskTransition.objects.filter(
            task_id=task_id, attempt=attempt, to_status="Running"
        ).exists(), (task_id, attempt)


def last_outbox_id() -> int:
    last = Outbox.objects.order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


def events_consumed_upto(upto: int, consumer: str = "consume") -> bool:
    """Every outbox row up to `upto` is Done, and every event among them has its consumer
    task, Completed. The source keeps emitting meanwhile; rows after `upto` are not judged."""
    rows = Outbox.objects.filter(pk__lte=upto)
    if rows.exclude(status=OutboxStatus.DONE).exists():
        return False
    events = set(rows.filter(kind=OutboxKind.ROUTE_EVENT).values_list("pk", flat=True))
    done = Task.objects.filter(job__name=consumer, trigger="event", status=TaskStatus.COMPLETED)
    consumed = {int(key.split(":")[1]) for key in done.values_list("dedupe_key", flat=True)}
    return events <= consumed


def source_events_after(outbox_id: int) -> int:
    """Events the source committed after outbox row `outbox_id`: the stream flows."""
    return Outbox.objects.filter(kind=OutboxKind.ROUTE_EVENT, pk__gt=outbox_id).count()


def assert_nothing_stuck() -> None:
    assert not Outbox.objects.filter(status=OutboxStatus.FAILED).exists()
    assert (
        not Task.objects.filter(status=TaskStatus.FAILED, next_retry_at__isnull=True)
        .exclude(job__source_kind="always_on")
        .exists()
    )


def assert_drill_outcome() -> None:
    """The invariants every drill ends with."""
    assert Task.objects.exists()  # else every check below would hold over nothing
    assert_one_execution_per_attempt(Task.objects.all())
    assert_never_two_running(Task.objects.filter(job__source_kind="always_on"))
    assert_no_stale_commit()
    assert_nothing_stuck()
