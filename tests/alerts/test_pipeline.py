"""Alert evaluation end to end in-process on anvil: a follower's hot rows, an alert_evaluate
job in the udf runtime running a definition's handler in the sandbox, the sink turning its
published batch into events and routing them to channels. Live tasks (a cursor), backtests
(a range) and reorgs (an invalidation): the events are the node's matching transactions, once
each; a dropped match is retracted (and its notification taken back); the same publication
sunk twice is one row per key; a malformed row dead-letters the whole batch, writing nothing,
until a replay after repair writes it."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from tests.udf_bundles import bundle
from trace_chain import devchain
from trace_chain.object_store import object_store_from_url
from trace_chain.rpc import RpcPool
from trace_tasks.runner import task_run
from trace_web.alerts.models import (
    AlertDefinition,
    AlertEvent,
    Channel,
    DeadLetterBatch,
    Delivery,
    EventState,
)
from trace_web.alerts.sink import dead_letter_replay, publication_sink
from trace_web.datasets.models import Dataset
from trace_web.orchestration.models import Outbox, OutboxKind
from trace_web.orchestration.selectors import active_job
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_drain
from trace_web.orchestration.services.routing import invalidations_schedule, route_event
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import TaskScope
from trace_web.udf.services import bundle_upload

CHAIN = devchain.ANVIL_CHAIN_ID
FOLLOW = f"""
name: follow
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {CHAIN}, rpc_pool: devchain}}
publish:
  chain.hot: {{job: follow, read_roles: [admin, member]}}
"""
ALERTS = f"""
name: alerts
jobs:
  - name: evaluate
    activation: reactive
    runtime: udf
    operator: alert_evaluate
    execution_strategy: PerUpdate
    scaling: {{max_concurrency: 1}}
    config: {{chain_id: {CHAIN}}}
    inputs: [{{from: {{dataset: chain.hot}}}}]
"""
# Every transfer of value over params["min_wei"], one event per transaction.
TRANSFERS = """
def handle(ctx):
    start, end = ctx.range
    answer = ctx.query(
        "SELECT t.block_number, t.block_hash, t.transaction_hash, t.value, b.timestamp "
        "FROM transactions t JOIN blocks b USING (block_number) "
        f"WHERE t.block_number >= {start} AND t.block_number < {end} "
        f"AND t.value > {int(ctx.params['min_wei'])} ORDER BY 1, 3"
    )
    return [
        {"block_number": n, "block_hash": h, "tx_hash": tx, "block_time": ts,
         "payload": {"value": str(v)}}
        for n, h, tx, v, ts in answer["rows"]
    ]
"""
# The same, with one row the event schema refuses.
MALFORMED = TRANSFERS.replace(
    'for n, h, tx, v, ts in answer["rows"]\n    ]',
    'for n, h, tx, v, ts in answer["rows"]\n    ] + [{"block_number": start, '
    '"block_hash": "0x" + "0" * 64, "surprise": 1}]',
)


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


@pytest.fixture
def chain(transactional_db, org, fresh_anvil, hot_engine):
    """acme follows a fresh anvil chain with value transfers; its alert job is deployed."""
    devchain.generate_traffic(fresh_anvil.url, blocks=4, txs_per_block=3)
    recorder = Recorder()
    follower = make_follower(fresh_anvil.url, hot_engine, recorder, org_id=org.pk)
    catch_up(follower)
    dag_sync(org=org, yaml_text=FOLLOW, activate=True)
    dag_sync(org=org, yaml_text=ALERTS, activate=True)
    return {"url": fresh_anvil.url, "follower": follower, "recorder": recorder}


def define(
    org, handler: str = TRANSFERS, *, min_wei: int = 0, channels=(), entrypoint: str = ""
) -> AlertDefinition:
    uploaded = bundle_upload(
        org=org, data=bundle({"main.py": handler.encode()}, name="transfers", version="1.0.0")
    )
    definition = AlertDefinition.objects.create(
        org=org,
        name="transfers",
        chain_id=CHAIN,
        bundle=uploaded.bundle,
        params={"min_wei": min_wei},
        entrypoint=entrypoint,
    )
    definition.channels.set(channels)
    return definition


def node_transfers(url: str, start: int, end: int, min_wei: int = 0) -> set[tuple[int, str, str]]:
    """(block, block hash, tx hash) of every transaction of [start, end) moving > min_wei."""
    found = set()
    with RpcPool("node", [url]) as rpc:
        for number in range(start, end):
            block = rpc.call("eth_getBlockByNumber", [hex(number), True])
            for tx in block["transactions"]:
                if int(tx["value"], 16) > min_wei:
                    found.add((number, block["hash"], tx["hash"]))
    return found


def events_of(definition, **filters) -> set[tuple[int, str, str]]:
    return {
        (e.block_number, e.block_hash, e.tx_hash)
        for e in AlertEvent.objects.filter(definition=definition, **filters)
    }


def run_and_sink(task) -> None:
    outcome = task_run(task_id=task.pk, worker_id="udf")
    task.refresh_from_db()
    assert outcome.status == "completed", task.error
    outbox_drain()


def announce(org, upto: int) -> None:
    """What the follower's emit does, through the real routing: a PerUpdate task to `upto`."""
    hot = Dataset.objects.get(org=org, published_name="chain.hot")
    with transaction.atomic():
        route_event(event_id=0, payload={"dataset_id": hot.pk, "cursor": upto})


def live_run(org) -> None:
    job = active_job(org_id=org.pk, dag_name="alerts", job_name="evaluate")
    for task in job.tasks.filter(status="Queued", trigger="event"):
        run_and_sink(task)


def test_a_backtest_finds_exactly_the_nodes_matching_transactions(chain, org):
    tip = chain["follower"].tip
    node = node_transfers(chain["url"], 0, tip + 1)
    assert node  # the traffic moved value
    definition = define(org)
    task = job_run_manual(
        org=org,
        dag_name="alerts",
        job_name="evaluate",
        scope=TaskScope(range_start=0, range_end=tip + 1),
        payload={"backtest": True, "deliver": False, "definitions": [definition.pk]},
    )
    run_and_sink(task)
    assert events_of(definition, backtest=True) == node
    event = AlertEvent.objects.filter(definition=definition).first()
    assert event.org_id == org.pk and event.producer_task_id == task.pk
    assert event.event_time is not None and int(event.payload["value"]) > 0
    assert not Delivery.objects.exists()  # a backtest delivers only when asked


def test_a_definition_runs_its_own_entrypoint_of_the_bundle(chain, org):
    tip = chain["follower"].tip
    # main:handle (the manifest's module, its default function) finds every transfer; the
    # definition names main:first, which keeps only the first.
    handler = TRANSFERS + "\n\ndef first(ctx):\n    return handle(ctx)[:1]\n"
    definition = define(org, handler, entrypoint="main:first")
    task = job_run_manual(
        org=org,
        dag_name="alerts",
        job_name="evaluate",
        scope=TaskScope(range_start=0, range_end=tip + 1),
        payload={"backtest": True, "deliver": False, "definitions": [definition.pk]},
    )
    run_and_sink(task)
    assert events_of(definition) == {min(node_transfers(chain["url"], 0, tip + 1))}


def test_live_tasks_evaluate_each_block_once_and_route_to_channels(chain, org):
    tip = chain["follower"].tip
    hook = Channel.objects.create(org=org, name="hook", kind="webhook", target="http://x.test")
    definition = define(org, channels=[hook])
    announce(org, tip - 2)  # a new job starts at the tip: block tip - 3 only
    live_run(org)
    announce(org, tip + 1)  # then [tip - 2, tip + 1)
    live_run(org)
    assert events_of(definition, backtest=False) == node_transfers(chain["url"], tip - 3, tip + 1)
    deliveries = Delivery.objects.filter(channel=hook)
    assert deliveries.count() == AlertEvent.objects.count() > 0
    wakes = Outbox.objects.filter(kind=OutboxKind.WAKE_DELIVERY)
    assert sorted(w.payload["delivery_id"] for w in wakes) == sorted(d.pk for d in deliveries)


def test_a_reorg_retracts_a_dropped_match_and_takes_its_notification_back(chain, org):
    follower, url = chain["follower"], chain["url"]
    tip = follower.tip
    hook = Channel.objects.create(org=org, name="hook", kind="webhook", target="http://x.test")
    definition = define(org, channels=[hook])
    announce(org, tip)
    live_run(org)
    announce(org, tip + 1)
    live_run(org)
    before = events_of(definition)
    assert {n for n, _, _ in before} == {tip - 1, tip}
    devchain.reorg(url, 2)  # tip - 1 and tip replaced by empty blocks: both matches gone
    catch_up(follower)
    follower.step()
    catch_up(follower)
    for invalidation in chain["recorder"].of_type("invalidation"):
        _record_invalidation(org, invalidation)
    invalidations_schedule()
    job = active_job(org_id=org.pk, dag_name="alerts", job_name="evaluate")
    (redo,) = job.tasks.filter(trigger="invalidation")
    run_and_sink(redo)
    assert events_of(definition, state=EventState.ACTIVE) == set()
    assert events_of(definition, state=EventState.RETRACTED) == before
    retractions = Delivery.objects.filter(purpose="retract", channel=hook)
    assert retractions.count() == len(before)


def _record_invalidation(org, invalidation) -> None:
    """The follower's invalidation as its fenced report records it (the hot dataset's)."""
    from trace_web.datasets.models import DataInvalidation, InvalidationKind

    DataInvalidation.objects.create(
        dataset=Dataset.objects.get(org=org, published_name="chain.hot"),
        kind=InvalidationKind.ROW_RANGE,
        range_start=invalidation["range_start"],
        range_end=invalidation["range_end"],
    )


def test_the_same_publication_sunk_twice_is_one_row_per_key(chain, org):
    tip = chain["follower"].tip
    definition = define(org)
    task = job_run_manual(
        org=org,
        dag_name="alerts",
        job_name="evaluate",
        scope=TaskScope(range_start=0, range_end=tip + 1),
        payload={"backtest": True, "definitions": [definition.pk]},
    )
    run_and_sink(task)
    record = Outbox.objects.get(kind=OutboxKind.ALERT_SINK).payload
    count = AlertEvent.objects.count()
    again = publication_sink(record=record)
    assert (again.created, again.existing) == (0, count) and AlertEvent.objects.count() == count


def test_one_malformed_row_dead_letters_the_batch_until_a_replay_after_repair(chain, org, settings):
    tip = chain["follower"].tip
    definition = define(org, MALFORMED)
    task = job_run_manual(
        org=org,
        dag_name="alerts",
        job_name="evaluate",
        scope=TaskScope(range_start=0, range_end=tip + 1),
        payload={"backtest": True, "definitions": [definition.pk]},
    )
    run_and_sink(task)
    assert not AlertEvent.objects.exists()  # nothing written
    (dead,) = DeadLetterBatch.objects.all()
    assert dead.org_id == org.pk and dead.task_id == task.pk and dead.status == "pending"
    assert "surprise" in dead.error and "line" in dead.error
    # Repair: the batch rewritten without its bad row; the replay writes the rest.
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    (batch,) = dead.record["batches"]
    key = batch["location"].split("/objects/", 1)[1]
    lines = [json.loads(line) for line in store.get_bytes(key).decode().splitlines()]
    good = [row for row in lines if "surprise" not in row]
    store.put_bytes("".join(json.dumps(row) + "\n" for row in good).encode(), key)
    outcome = dead_letter_replay(dead_letter=dead)
    assert outcome.created == len(good) == len(node_transfers(chain["url"], 0, tip + 1))
    dead.refresh_from_db()
    assert dead.status == "replayed" and dead.replayed_at is not None


def test_with_confirmations_a_block_reorged_out_before_its_depth_is_never_notified(chain, org):
    follower, url = chain["follower"], chain["url"]
    tip = follower.tip
    orphaned = node_transfers(url, tip - 1, tip + 1)
    assert orphaned  # the two blocks the reorg will replace moved value
    hook = Channel.objects.create(org=org, name="hook", kind="webhook", target="http://x.test")
    definition = define(org, channels=[hook])
    definition.confirmations = 2
    definition.save()
    announce(org, tip - 1)
    live_run(org)
    announce(org, tip + 1)  # blocks up to tip - 2 are 2 deep: evaluated; tip - 1, tip wait
    live_run(org)
    assert events_of(definition) == node_transfers(url, tip - 4, tip - 1)
    devchain.reorg(url, 2)  # replaced before they were 2 deep
    with RpcPool("node", [url]) as rpc:
        for _ in range(2):
            rpc.call("evm_mine")
    catch_up(follower)
    follower.step()
    catch_up(follower)
    for invalidation in chain["recorder"].of_type("invalidation"):
        _record_invalidation(org, invalidation)
    invalidations_schedule()
    job = active_job(org_id=org.pk, dag_name="alerts", job_name="evaluate")
    for redo in job.tasks.filter(trigger="invalidation"):
        run_and_sink(redo)
    announce(org, tip + 3)  # the new tip - 1 and tip are now 2 deep
    live_run(org)
    assert not events_of(definition) & orphaned
    assert {n for n, _, _ in events_of(definition)} <= set(range(tip - 4, tip + 1))
    notified = {d.event.tx_hash for d in Delivery.objects.select_related("event")}
    assert not notified & {tx for _, _, tx in orphaned}
    assert events_of(definition) == node_transfers(url, tip - 4, tip + 1)


def test_a_match_a_reorg_moves_to_another_block_is_not_notified_twice(chain, org):
    follower, url = chain["follower"], chain["url"]
    tip = follower.tip
    hook = Channel.objects.create(org=org, name="hook", kind="webhook", target="http://x.test")
    definition = define(org, channels=[hook])
    announce(org, tip)  # evaluates tip - 1
    live_run(org)
    (moved, *_) = sorted(tx for n, _, tx in events_of(definition) if n == tip - 1)
    with RpcPool("node", [url]) as rpc:
        raw = rpc.call("eth_getRawTransactionByHash", [moved])
    devchain.reorg(url, 2, [(raw, 1)])  # the same transaction, one block later
    catch_up(follower)
    follower.step()
    catch_up(follower)
    for invalidation in chain["recorder"].of_type("invalidation"):
        _record_invalidation(org, invalidation)
    invalidations_schedule()
    job = active_job(org_id=org.pk, dag_name="alerts", job_name="evaluate")
    for redo in job.tasks.filter(trigger="invalidation"):
        run_and_sink(redo)
    announce(org, tip + 1)
    live_run(org)
    events = AlertEvent.objects.filter(definition=definition, tx_hash=moved)
    assert sorted((e.block_number, e.state) for e in events) == [
        (tip - 1, EventState.RETRACTED),
        (tip, EventState.ACTIVE),
    ]
    sends = Delivery.objects.filter(event__tx_hash=moved)
    assert [(d.event.block_number, d.purpose) for d in sends] == [(tip - 1, "notify")]
