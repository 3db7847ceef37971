"""chain_sync planning on a range's completion (`chain_sync_range_completed`, what the
completion's route event calls) and the settling of ranges, called as services: only the
completed range's stream is planned, nothing for a paused sync, a stale or unobserved head,
or a task that is not a range's; a failure is left to the tick; each range's outcome is
recorded field by field."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.integration.test_chain_sync import complete, fixed, ranges
from trace_chain import devchain
from trace_web.chain_sync.models import ChainSync, RangeStatus, ScheduledRange
from trace_web.chain_sync.services import (
    chain_sync_apply,
    chain_sync_plan,
    chain_sync_range_completed,
)
from trace_web.orchestration.models import DagPointer
from trace_web.orchestration.services.tasks import task_cancel, task_claim, task_fail


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def scheduled(dataset, start):
    return ScheduledRange.objects.get(stream__dataset=dataset, range_start=start)


def test_a_completion_plans_the_next_range_of_its_own_stream_only(org):
    chain_sync_apply(org=org, yaml_text=fixed(to_block=30, inflight=1))
    assert chain_sync_plan() == 2  # blocks and logs, one range each
    first = scheduled("blocks", 0)
    complete(first)
    assert chain_sync_range_completed(task_id=first.task_id) == 1
    assert ranges("blocks") == [(0, 10, "done"), (10, 20, "scheduled")]
    assert ranges("logs") == [(0, 10, "scheduled")]  # another stream: not planned here
    first.refresh_from_db()
    assert first.error == "" and first.finished_at is not None
    assert chain_sync_range_completed(task_id=first.task_id + 10_000) == 0  # not a range's task
    assert len(ranges("blocks")) == 2


def test_a_completion_of_a_paused_sync_plans_and_settles_nothing(org):
    chain_sync_apply(org=org, yaml_text=fixed(to_block=30, inflight=1, datasets=("blocks",)))
    chain_sync_plan()
    first = scheduled("blocks", 0)
    chain_sync_apply(
        org=org, yaml_text=fixed(to_block=30, inflight=1, datasets=("blocks",), enabled=False)
    )
    complete(first)
    assert chain_sync_range_completed(task_id=first.task_id) == 0
    assert ranges("blocks") == [(0, 10, "scheduled")]


def test_a_completion_whose_planning_fails_is_left_to_the_tick(org):
    chain_sync_apply(org=org, yaml_text=fixed(to_block=30, inflight=1, datasets=("blocks",)))
    chain_sync_plan()
    first = scheduled("blocks", 0)
    complete(first)
    DagPointer.objects.filter(org=org).delete()  # the generated DAG rolled back: no job
    assert chain_sync_range_completed(task_id=first.task_id) == 0  # logged, not raised
    assert ranges("blocks") == [(0, 10, "scheduled")]  # the pass was rolled back whole


def test_a_follow_head_completion_plans_full_chunks_to_the_observed_head(org, monkeypatch):
    with devchain.Anvil() as node:
        monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", node.url)
        devchain.mine(node.url, 23)
        text = (
            fixed(chunk=5, inflight=1, datasets=("blocks",))
            .replace("mode: fixed_target", "mode: follow_head\ntail_lag: 3")
            .replace("to_block: 25\n", "")
        )
        chain_sync_apply(org=org, yaml_text=text)
        assert chain_sync_plan() == 1  # observes head 23: plans to 21, one in flight
    # The node is gone: planning on completion reads only the head the tick observed.
    complete(scheduled("blocks", 0))
    assert chain_sync_range_completed(task_id=scheduled("blocks", 0).task_id) == 1
    assert [r[:2] for r in ranges("blocks")] == [(0, 5), (5, 10)]

    # A head unchanged for longer than stale_head_seconds: nothing planned, nothing settled.
    ChainSync.objects.update(
        head_changed_at=timezone.now() - timezone.timedelta(hours=1), stale_head_seconds=60
    )
    second = scheduled("blocks", 5)
    complete(second)
    assert chain_sync_range_completed(task_id=second.task_id) == 0
    assert ranges("blocks")[-1] == (5, 10, "scheduled")

    # No head observed (yet): the range is settled, nothing is planned.
    ChainSync.objects.update(head_block=None, head_changed_at=None)
    assert chain_sync_range_completed(task_id=second.task_id) == 0
    assert ranges("blocks") == [(0, 5, "done"), (5, 10, "done")]

    ChainSync.objects.update(head_block=23, head_changed_at=timezone.now())
    assert chain_sync_range_completed(task_id=second.task_id) == 1
    for start in (10, 15):
        complete(scheduled("blocks", start))
        planned = chain_sync_range_completed(task_id=scheduled("blocks", start).task_id)
        assert planned == (1 if start == 10 else 0)
    # [20, 21) is below the target but not a full chunk: at the head, it waits.
    assert [r[:2] for r in ranges("blocks")] == [(0, 5), (5, 10), (10, 15), (15, 20)]


def test_settling_records_each_ranges_outcome_whatever_the_order(org):
    chain_sync_apply(org=org, yaml_text=fixed(to_block=40, inflight=3, datasets=("blocks",)))
    assert chain_sync_plan() == 3
    # The second range completes while the first is still running, the third is canceled.
    task_claim(task_id=scheduled("blocks", 0).task_id, worker_id="w")
    complete(scheduled("blocks", 10))
    task_cancel(task_id=scheduled("blocks", 20).task_id, org_id=org.pk)
    chain_sync_plan()
    assert ranges("blocks") == [
        (0, 10, "scheduled"),
        (10, 20, "done"),
        (20, 30, "failed"),
        (30, 40, "scheduled"),
    ]
    done, canceled = scheduled("blocks", 10), scheduled("blocks", 20)
    assert (done.error, canceled.error) == ("", "Canceled")  # no error text: the status
    assert done.finished_at is not None and canceled.finished_at is not None


def test_a_failed_ranges_error_is_the_tasks_cut_at_4000_characters(org):
    chain_sync_apply(org=org, yaml_text=fixed(datasets=("blocks",), inflight=1))
    chain_sync_plan()
    claimed = task_claim(task_id=scheduled("blocks", 0).task_id, worker_id="w")
    error = "".join(f"{n % 10}" for n in range(5000))
    task_fail(lease=claimed.lease, error=error, retryable=False)
    chain_sync_plan()
    failed = scheduled("blocks", 0)
    assert failed.status == RangeStatus.FAILED and failed.error == error[:4000]
