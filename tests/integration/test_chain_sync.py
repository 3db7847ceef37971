"""chain_sync declarations and the planner, called as services: validation with field paths,
durable cursors, unique ranges, top-up to max_inflight, completion only on accepted
publication, pause by re-applying, and follow_head against a real anvil head."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from trace_chain import devchain
from trace_web.chain_sync.models import ChainSync, RangeStatus, ScheduledRange
from trace_web.chain_sync.selectors import chain_sync_status
from trace_web.chain_sync.services import chain_sync_apply, chain_sync_plan
from trace_web.errors import ValidationFailed
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.tasks import task_claim, task_complete, task_fail
from trace_web.orchestration.services.tokens import capability_token_verify


def fixed(to_block=25, enabled=True, chunk=10, inflight=2, datasets=("blocks", "logs")):
    streams = "\n".join(
        f"  - {{dataset: {d}, chunk_size: {chunk}, max_inflight: {inflight}, rpc_pool: devchain}}"
        for d in datasets
    )
    return f"""
kind: chain_sync
name: history
chain_id: 31337
mode: fixed_target
from_block: 0
to_block: {to_block}
enabled: {str(enabled).lower()}
streams:
{streams}
"""


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def ranges(dataset):
    return list(
        ScheduledRange.objects.filter(stream__dataset=dataset)
        .order_by("range_start")
        .values_list("range_start", "range_end", "status")
    )


def store_root():
    from django.conf import settings

    from trace_chain.object_store import object_store_from_url

    return object_store_from_url(settings.TRACE_OBJECT_STORE_URL).uri()


def complete(scheduled, rows=10):
    claimed = task_claim(task_id=scheduled.task_id, worker_id="w")
    (prefix,) = capability_token_verify(claimed.capability_token).claims["prefixes"]
    # Exactly this range's partition: no other range's files, no other org's.
    assert prefix.startswith(f"{store_root()}31337/{scheduled.stream.dataset}/")
    assert prefix.endswith(f"/{scheduled.range_start:08}_{scheduled.range_end - 1:08}/")
    publication = {
        "location": f"{prefix}{scheduled.range_start}/",
        "row_count": rows,
        "config_hash": "c" * 64,
    }
    task_complete(
        lease=claimed.lease,
        outputs=[
            {
                "output": 0,
                "range_start": scheduled.range_start,
                "range_end": scheduled.range_end,
                "publication": publication,
            }
        ],
    )


def test_invalid_chain_sync_names_the_field(org):
    bad = (
        fixed()
        .replace("to_block: 25", "to_block: 0")
        .replace("dataset: logs", "dataset: state_diffs")
    )
    with pytest.raises(ValidationFailed) as excinfo:
        chain_sync_apply(org=org, yaml_text=bad)
    errors = excinfo.value.details
    assert any(e.startswith("streams[1].dataset") for e in errors), errors
    assert any(e.startswith("to_block") for e in errors), errors
    missing = fixed().replace("to_block: 25\n", "")
    with pytest.raises(ValidationFailed) as excinfo:
        chain_sync_apply(org=org, yaml_text=missing)
    assert "to_block: required when mode is 'fixed_target'" in excinfo.value.details


def test_traces_is_a_stream_of_its_own_beside_the_other_three(org):
    every = ("blocks", "transactions", "logs", "traces")
    chain_sync_apply(org=org, yaml_text=fixed(datasets=every))
    assert chain_sync_plan() == 8  # four streams, max_inflight 2 each
    assert [r[:2] for r in ranges("traces")] == [(0, 10), (10, 20)]
    jobs = {t.job.name: t.job.config for t in Task.objects.select_related("job")}
    assert jobs["traces"]["dataset"] == "traces"
    twice = fixed(datasets=(*every, "traces"))
    with pytest.raises(ValidationFailed) as excinfo:
        chain_sync_apply(org=org, yaml_text=twice)
    assert "streams[4].dataset: 'traces' listed twice" in excinfo.value.details


def test_planner_tops_up_and_completes_each_range_exactly_once(org):
    chain_sync_apply(org=org, yaml_text=fixed())
    assert chain_sync_plan() == 4  # two streams, max_inflight 2 each
    assert chain_sync_plan() == 0  # nothing completed yet: stays at max_inflight
    assert ranges("blocks") == [(0, 10, "scheduled"), (10, 20, "scheduled")]
    first = ScheduledRange.objects.get(stream__dataset="blocks", range_start=0)
    complete(first)
    assert chain_sync_plan() == 1
    assert ranges("blocks")[0][2] == RangeStatus.DONE
    assert ranges("blocks")[-1][:2] == (20, 25)  # the last range ends at to_block (exclusive)
    for scheduled in ScheduledRange.objects.filter(status=RangeStatus.SCHEDULED):
        complete(scheduled)
    chain_sync_plan()
    for scheduled in ScheduledRange.objects.filter(status=RangeStatus.SCHEDULED):
        complete(scheduled)
    chain_sync_plan()
    for dataset in ("blocks", "logs"):
        assert ranges(dataset) == [(0, 10, "done"), (10, 20, "done"), (20, 25, "done")]
    status = chain_sync_status(sync=ChainSync.objects.get())
    assert all(row["complete"] and row["done_blocks"] == 25 for row in status)
    assert Task.objects.filter(trigger="chain_sync").count() == 6


def test_failed_range_is_visible_and_can_be_retried(org, capsys):
    chain_sync_apply(org=org, yaml_text=fixed(datasets=("blocks",), inflight=1))
    chain_sync_plan()
    scheduled = ScheduledRange.objects.get()
    claimed = task_claim(task_id=scheduled.task_id, worker_id="w")
    task_fail(lease=claimed.lease, error="node exploded", retryable=False)
    chain_sync_plan()
    scheduled.refresh_from_db()
    assert scheduled.status == RangeStatus.FAILED and "node exploded" in scheduled.error
    assert chain_sync_status(sync=ChainSync.objects.get())[0]["errors"] == 1
    call_command("chain_sync", "retry", "--job", "history", "--org", org.slug)
    assert "1 failed range(s) scheduled again" in capsys.readouterr().out
    scheduled.refresh_from_db()
    assert scheduled.status == RangeStatus.SCHEDULED and scheduled.task_id != claimed.task.pk
    complete(scheduled)
    chain_sync_plan()
    assert ranges("blocks")[0] == (0, 10, "done")
    assert chain_sync_status(sync=ChainSync.objects.get())[0]["errors"] == 0


def test_a_failed_range_whose_task_is_retried_by_hand_is_in_flight_then_done(org):
    from trace_web.orchestration.services.tasks import task_retry

    chain_sync_apply(org=org, yaml_text=fixed(datasets=("blocks",), inflight=1))
    chain_sync_plan()
    scheduled = ScheduledRange.objects.get()
    claimed = task_claim(task_id=scheduled.task_id, worker_id="w")
    task_fail(lease=claimed.lease, error="node exploded", retryable=False)
    chain_sync_plan()
    assert ranges("blocks") == [(0, 10, "failed"), (10, 20, "scheduled")]
    task_retry(task_id=scheduled.task_id, org_id=org.pk)  # the admin's or the CLI's retry
    assert chain_sync_plan() == 0  # the retried range is in flight again: nothing new
    assert ranges("blocks") == [(0, 10, "scheduled"), (10, 20, "scheduled")]
    scheduled.refresh_from_db()
    assert (scheduled.error, scheduled.task_id) == ("", claimed.task.pk)  # the same task
    complete(scheduled)
    chain_sync_plan()
    assert ranges("blocks")[0] == (0, 10, "done")
    assert chain_sync_status(sync=ChainSync.objects.get())[0]["errors"] == 0


def test_lowering_from_block_plans_only_the_new_gap(org):
    chain_sync_apply(
        org=org,
        yaml_text=fixed(datasets=("blocks",), inflight=10).replace(
            "from_block: 0", "from_block: 15"
        ),
    )
    chain_sync_plan()
    assert [r[:2] for r in ranges("blocks")] == [(15, 25)]
    chain_sync_apply(
        org=org,
        yaml_text=fixed(datasets=("blocks",), inflight=10).replace(
            "from_block: 0", "from_block: 3"
        ),
    )
    chain_sync_plan()
    assert [r[:2] for r in ranges("blocks")] == [(3, 13), (13, 15), (15, 25)]


def test_one_broken_sync_does_not_stop_the_others(org, other_org):
    chain_sync_apply(org=other_org, yaml_text=fixed(datasets=("blocks",)))
    chain_sync_apply(org=org, yaml_text=fixed(datasets=("blocks",)))
    # Someone rolled globex's generated DAG back to nothing usable: its planning fails.
    from trace_web.orchestration.models import DagPointer

    DagPointer.objects.filter(org=other_org).delete()
    assert chain_sync_plan() == 2
    assert ScheduledRange.objects.filter(stream__chain_sync__org=org).count() == 2


def test_pause_by_reapplying_disabled_and_resume_keeps_the_cursor(org, tmp_path, capsys):
    path = tmp_path / "sync.yaml"
    path.write_text(fixed(datasets=("blocks",)))
    call_command("chain_sync", "apply", str(path), "--org", org.slug)
    assert "created" in capsys.readouterr().out
    call_command("chain_sync", "apply", str(path), "--org", org.slug)
    assert "unchanged" in capsys.readouterr().out
    chain_sync_plan()
    path.write_text(fixed(datasets=("blocks",), enabled=False))
    call_command("chain_sync", "apply", str(path), "--org", org.slug)
    assert "paused" in capsys.readouterr().out
    for scheduled in ScheduledRange.objects.all():
        complete(scheduled)
    assert chain_sync_plan() == 0  # paused: settles nothing new, plans nothing
    path.write_text(fixed(datasets=("blocks",)))
    call_command("chain_sync", "apply", str(path), "--org", org.slug)
    assert chain_sync_plan() == 1
    assert ranges("blocks")[-1][:2] == (20, 25)
    call_command("chain_sync", "status", "--job", "history", "--org", org.slug)
    out = capsys.readouterr().out
    assert "blocks" in out and "cursor 25" in out and "errors 0" in out


def test_follow_head_plans_full_chunks_below_head_minus_lag(org, monkeypatch):
    with devchain.Anvil() as node:
        monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", node.url)
        devchain.mine(node.url, 23)
        text = (
            fixed(chunk=5, inflight=10, datasets=("blocks",))
            .replace("mode: fixed_target", "mode: follow_head\ntail_lag: 3")
            .replace("to_block: 25\n", "")
        )
        chain_sync_apply(org=org, yaml_text=text)
        chain_sync_plan()
        # head 23, lag 3: blocks up to 20 are final enough; full chunks of 5 -> [0, 20)
        assert [r[:2] for r in ranges("blocks")] == [(0, 5), (5, 10), (10, 15), (15, 20)]
        devchain.mine(node.url, 5)
        chain_sync_plan()
        assert ranges("blocks")[-1][:2] == (20, 25)
        # A head that has not moved for stale_head_seconds is stale: plan nothing, although
        # [25, 30) and [30, 35) would be due.
        head = devchain.mine(node.url, 10)
        ChainSync.objects.update(
            head_block=head,
            head_changed_at=timezone.now() - timezone.timedelta(hours=1),
            stale_head_seconds=60,
        )
        assert chain_sync_plan() == 0
        devchain.mine(node.url, 1)  # it moves again: planning resumes
        assert chain_sync_plan() == 2


def test_status_endpoints(org, api, hot_engine):
    from trace_chain.hot_store import hot_follower_org_register, hot_status_update

    assert api.get("/v1/chains/31337/status").status_code == 404
    hot_status_update(hot_engine, chain_id=31337, head_block=120, tip_block=117)
    assert api.get("/v1/chains/31337/status").status_code == 404  # not followed by this org
    hot_follower_org_register(hot_engine, chain_id=31337, org_id=org.pk)
    hot_status_update(hot_engine, chain_id=31337, head_block=121, tip_block=118, reorg_depth=2)
    body = api.get("/v1/chains/31337/status").json()
    assert (body["lag_blocks"], body["reorg_count"], body["last_reorg_depth"]) == (3, 1, 2)
    chain_sync_apply(org=org, yaml_text=fixed(datasets=("blocks",)))
    chain_sync_plan()
    sync = api.get("/v1/chain-syncs/history").json()
    assert sync["streams"][0]["inflight"] == 2 and sync["streams"][0]["cursor"] == 20
    assert api.get("/v1/chain-syncs/nope").status_code == 404


def test_status_measures_the_completion_rate_and_gives_an_eta(org):
    chain_sync_apply(org=org, yaml_text=fixed(datasets=("blocks",)))
    chain_sync_plan()
    for scheduled in ScheduledRange.objects.filter(status=RangeStatus.SCHEDULED):
        complete(scheduled)
    chain_sync_plan()  # settles [0, 10) and [10, 20), schedules [20, 25)
    now = timezone.now()
    # Both ranges were scheduled 100 s ago and done 50 s ago: 20 blocks in 100 s so far,
    # with [20, 25) still in flight.
    ScheduledRange.objects.filter(status=RangeStatus.DONE).update(
        created_at=now - timezone.timedelta(seconds=100),
        finished_at=now - timezone.timedelta(seconds=50),
    )
    # Measured at `now`, not whenever the call happens to run: the rate is exact.
    (row,) = chain_sync_status(sync=ChainSync.objects.get(), now=now)
    assert (row["plan_target"], row["done_blocks"], row["remaining_blocks"]) == (25, 20, 5)
    assert row["blocks_per_second"] == 0.2  # 20 blocks / 100 s
    assert row["eta_seconds"] == 25  # 5 blocks at that rate
    # Nothing completed in the last ten minutes: no rate, so no ETA rather than a made-up one.
    ScheduledRange.objects.filter(status=RangeStatus.DONE).update(
        finished_at=now - timezone.timedelta(hours=1)
    )
    (row,) = chain_sync_status(sync=ChainSync.objects.get(), now=now)
    assert (row["blocks_per_second"], row["eta_seconds"]) == (0.0, None)


def test_status_shows_the_block_follow_head_plans_to(org, capsys):
    text = (
        fixed(datasets=("blocks",))
        .replace("mode: fixed_target", "mode: follow_head\ntail_lag: 3")
        .replace("to_block: 25\n", "")
    )
    chain_sync_apply(org=org, yaml_text=text)
    (row,) = chain_sync_status(sync=ChainSync.objects.get())
    assert row["plan_target"] is None  # no head observed yet
    ChainSync.objects.update(head_block=100)
    (row,) = chain_sync_status(sync=ChainSync.objects.get())
    assert (row["plan_target"], row["remaining_blocks"], row["total_blocks"]) == (98, 98, None)
    call_command("chain_sync", "status", "--job", "history", "--org", org.slug)
    out = capsys.readouterr().out
    assert "head 100" in out and "plans to 98" in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_writes_escape_codes_only_to_a_terminal(org):
    chain_sync_apply(org=org, yaml_text=fixed(datasets=("blocks",), inflight=3))
    chain_sync_plan()
    for scheduled in ScheduledRange.objects.all():
        complete(scheduled)
    chain_sync_plan()  # all done: --watch draws once and stops
    args = ("chain_sync", "status", "--job", "history", "--org", org.slug, "--watch")
    piped, terminal = io.StringIO(), Terminal()
    call_command(*args, stdout=piped)
    call_command(*args, stdout=terminal)
    assert "\x1b" not in piped.getvalue()
    assert "25/25" in piped.getvalue()
    assert piped.getvalue()[:4].isdigit()  # each refresh starts with its time stamp
    assert terminal.getvalue().startswith("\x1b[2J\x1b[H")
    with pytest.raises(CommandError, match="--interval"):
        call_command(*args, "--interval", "0")


def _locks_waited_for() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_planning_on_completion_waits_for_a_pass_holding_the_stream(transactional_db, org):
    """A range completes while a planner pass (a tick) holds its stream, having settled before
    the completion was visible: the completion's route event waits for that pass instead of
    skipping the stream, so the next range is planned once, with no further tick."""
    import threading

    from django.db import connection, transaction

    from tests.waiting import wait_for
    from trace_web.chain_sync.models import ChainSyncStream
    from trace_web.orchestration.services.outbox import outbox_drain

    chain_sync_apply(org=org, yaml_text=fixed(to_block=30, inflight=1, datasets=("blocks",)))
    assert chain_sync_plan() == 1
    first = ScheduledRange.objects.get()
    locked, release = threading.Event(), threading.Event()

    def tick_holding_the_stream():
        try:
            with transaction.atomic():
                ChainSyncStream.objects.select_for_update().get()
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    tick = threading.Thread(target=tick_holding_the_stream)
    tick.start()
    assert locked.wait(10)
    complete(first)  # commits the publication and its route event (published by the drain)

    def drain():
        try:
            outbox_drain()
        finally:
            connection.close()

    drainer = threading.Thread(target=drain)
    drainer.start()
    wait_for(
        lambda: _locks_waited_for() >= 1 or not drainer.is_alive(),
        timeout=10,
        what="the route event waiting for the stream (or done)",
    )
    release.set()
    tick.join(10)
    drainer.join(30)
    assert ranges("blocks") == [(0, 10, "done"), (10, 20, "scheduled")]
    assert chain_sync_plan() == 0  # the tick that follows plans nothing twice
    assert Task.objects.filter(trigger="chain_sync").count() == 2
