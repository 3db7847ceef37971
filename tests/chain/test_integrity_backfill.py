"""integrity_check over Cryo backfill partitions: a chain_sync backfills a real anvil chain with
real Cryo, its cryo_ingest tasks run in-process and commit through the task API
(`partition_versions`), and the check reads the partitions the org's queries read. A clean
range passes; a changed row, a truncated file, a deleted file are each found with their range
and kind; a backfill without a dataset's stream has no gap for it; a later chunked backfill of
the same range is what is checked; the operator (`source: backfill`) records the mismatch,
rebuilds the partition under a revision inside its prefix, records it in the backfill's own
dataset, and queries read the rebuilt files from then on; a gap is reported, not rebuilt; a
bad source is refused by name."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from trace_chain import devchain
from trace_chain.adapter import ChainAdapter
from trace_chain.integrity import integrity_check
from trace_chain.rpc import RpcPool
from trace_operators.context import ConfigError
from trace_operators.integrity_check import config_parse
from trace_tasks.runner import task_run
from trace_web.chain_sync.models import RangeStatus, ScheduledRange
from trace_web.chain_sync.services import chain_sync_apply, chain_sync_plan
from trace_web.orchestration.models import Task, TaskStatus
from trace_web.query.selectors import backfill_partitions

CHAIN = devchain.ANVIL_CHAIN_ID
FINALITY = 3
TO_BLOCK = 15  # end-exclusive: three ranges of five blocks per stream
SYNC = f"""
kind: chain_sync
name: history
chain_id: {CHAIN}
mode: fixed_target
from_block: 0
to_block: {TO_BLOCK}
streams:
  - {{dataset: blocks, chunk_size: 5, max_inflight: 3, rpc_pool: devchain}}
  - {{dataset: transactions, chunk_size: 5, max_inflight: 3, rpc_pool: devchain}}
  - {{dataset: logs, chunk_size: 5, max_inflight: 3, rpc_pool: devchain}}
"""
CHECK = f"""
name: backfill-integrity
jobs:
  - name: check
    activation: manual
    operator: integrity_check
    outputs: 1
    config:
      chain_id: {CHAIN}
      source: backfill
      rpc_url: URL
      finality_depth_blocks: {FINALITY}
      last_blocks: 10
      alert_channel: ops
"""


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


@pytest.fixture
def backfilled(org, fresh_anvil, hot_engine, cold, monkeypatch):
    """[0, 15) of blocks, transactions and logs backfilled by chain_sync's cryo_ingest tasks,
    all final; yields the node's URL and an adapter."""
    url = fresh_anvil.url
    monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", url)
    devchain.generate_traffic(url, blocks=TO_BLOCK, txs_per_block=2)
    devchain.mine(url, FINALITY)
    chain_sync_apply(org=org, yaml_text=SYNC)
    for _ in range(5):
        chain_sync_plan()  # settles what completed, plans what is left
        queued = Task.objects.filter(status=TaskStatus.QUEUED).order_by("pk")
        for task in queued:
            assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
        if not queued and not ScheduledRange.objects.exclude(status=RangeStatus.DONE).exists():
            break
    assert ScheduledRange.objects.filter(status=RangeStatus.DONE).count() == 9
    with RpcPool("check", [url], timeout=10.0, max_retries=0) as pool:
        adapter = ChainAdapter(pool)
        yield url, adapter
        adapter.close()


CHUNKED = f"""
name: rebackfill
jobs:
  - name: blocks
    activation: manual
    operator: cryo_ingest
    config: {{chain_id: {CHAIN}, dataset: blocks, rpc_pool: devchain, chunk_size: 4}}
"""


def check(org, hot_engine, cold, adapter, partitions=None):
    return integrity_check(
        engine=hot_engine,
        store=cold,
        adapter=adapter,
        chain_id=CHAIN,
        range_start=None,
        range_end=None,
        finality_depth_blocks=FINALITY,
        partitions=partitions or backfill_partitions(org_id=org.pk, chain_id=CHAIN),
    )


def path_of(org, cold, dataset, start):
    partition = next(
        p
        for p in backfill_partitions(org_id=org.pk, chain_id=CHAIN)
        if p.dataset == dataset and p.range_start == start
    )
    return cold.root / (partition.location.removeprefix(cold.uri()) + partition.files[0]["name"])


def found(report):
    return sorted({(m.kind, m.dataset, m.range_start, m.range_end) for m in report.mismatches})


def test_the_backfill_partitions_are_the_committed_ones_queries_read(org, backfilled, cold):
    partitions = backfill_partitions(org_id=org.pk, chain_id=CHAIN)
    assert sorted((p.dataset, p.range_start, p.range_end) for p in partitions) == sorted(
        (d, s, s + 5) for d in ("blocks", "transactions", "logs") for s in (0, 5, 10)
    )
    assert all(p.location.startswith(cold.uri()) and len(p.files) == 1 for p in partitions)
    assert backfill_partitions(org_id=org.pk, chain_id=CHAIN + 1) == []


def test_a_clean_backfill_range_passes(org, backfilled, hot_engine, cold):
    _, adapter = backfilled
    report = check(org, hot_engine, cold, adapter)
    assert report.clean, report.mismatches
    assert (report.range_start, report.range_end) == (0, TO_BLOCK)
    assert report.blocks_checked == TO_BLOCK
    assert report.partitions_checked == 9


def _change_a_block_hash(org, cold):
    path = path_of(org, cold, "blocks", 5)
    table = pq.read_table(path)
    hashes = table.column("block_hash").to_pylist()
    hashes[2] = "0x" + "ab" * 32
    index = table.schema.get_field_index("block_hash")
    pq.write_table(table.set_column(index, table.schema.field(index), [hashes]), path)


def _truncate(org, cold):
    path = path_of(org, cold, "transactions", 10)
    path.write_bytes(path.read_bytes()[:100])


def _delete(org, cold):
    path_of(org, cold, "logs", 0).unlink()


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            _change_a_block_hash,
            [
                ("checksum", "blocks", 5, 10),
                ("hash", "blocks", 5, 10),
                ("parent_link", "blocks", 5, 10),
            ],
        ),
        (_truncate, [("checksum", "transactions", 10, 15)]),
        (_delete, [("missing", "logs", 0, 5)]),
    ],
    ids=["change-a-row", "truncate", "delete"],
)
def test_tampering_with_a_backfill_partition_is_found_with_its_range_and_kind(
    org, backfilled, hot_engine, cold, tamper, expected
):
    _, adapter = backfilled
    tamper(org, cold)
    report = check(org, hot_engine, cold, adapter)
    assert found(report) == expected


def test_a_dropped_log_row_shows_as_its_block_s_log_count(org, backfilled, hot_engine, cold):
    _, adapter = backfilled
    path = path_of(org, cold, "logs", 5)
    table = pq.read_table(path)
    assert table.num_rows > 0
    dropped = table.column("block_number")[0].as_py()
    pq.write_table(table.slice(1), path)
    report = check(org, hot_engine, cold, adapter)
    assert found(report) == [("checksum", "logs", 5, 10), ("log_count", "logs", 5, 10)]
    assert [m.block for m in report.mismatches if m.kind == "log_count"] == [dropped]


def test_a_backfill_without_a_dataset_s_stream_has_no_gap_for_it(org, backfilled, hot_engine, cold):
    _, adapter = backfilled
    partitions = backfill_partitions(org_id=org.pk, chain_id=CHAIN)
    without = [p for p in partitions if p.dataset != "transactions"]
    report = check(org, hot_engine, cold, adapter, partitions=without)
    assert report.clean and report.partitions_checked == 6
    gap = [p for p in partitions if (p.dataset, p.range_start) != ("logs", 5)]
    assert found(check(org, hot_engine, cold, adapter, partitions=gap)) == [
        ("coverage", "logs", 5, 10)
    ]


def test_a_later_chunked_backfill_is_what_is_checked_where_it_shadows(
    org, backfilled, hot_engine, cold
):
    from trace_web.orchestration.services.dags import dag_sync
    from trace_web.orchestration.services.sources import job_run_manual
    from trace_web.orchestration.services.tasks import TaskScope

    _, adapter = backfilled
    dag_sync(org=org, yaml_text=CHUNKED, activate=True)
    task = job_run_manual(
        org=org,
        dag_name="rebackfill",
        job_name="blocks",
        scope=TaskScope(range_start=0, range_end=TO_BLOCK),
    )
    assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
    partitions = backfill_partitions(org_id=org.pk, chain_id=CHAIN)
    (blocks,) = [p for p in partitions if p.dataset == "blocks"]  # chain_sync's: shadowed
    assert (blocks.range_start, blocks.range_end) == (0, TO_BLOCK)
    assert [(f["range_start"], f["range_end"]) for f in blocks.files] == [
        (0, 4),
        (4, 8),
        (8, 12),
        (12, 15),
    ]
    report = check(org, hot_engine, cold, adapter)
    assert report.clean, report.mismatches  # each file holds its own chunk of the range
    assert report.partitions_checked == 7
    prefix = cold.root / blocks.location.removeprefix(cold.uri())
    (prefix / blocks.files[1]["name"]).unlink()
    assert found(check(org, hot_engine, cold, adapter)) == [("missing", "blocks", 0, TO_BLOCK)]


def test_the_operator_rebuilds_a_damaged_backfill_partition_that_queries_then_read(
    org, backfilled, hot_engine, cold, client_for
):
    from tests.chain.test_cryo_ingest import node_counts
    from trace_web.alerts.models import Channel, Delivery
    from trace_web.datasets.models import DataInvalidation, IntegrityCheck, PartitionVersion
    from trace_web.orchestration.services.dags import dag_sync
    from trace_web.orchestration.services.sources import job_run_manual
    from trace_web.orgs.models import Role

    url, _ = backfilled
    Channel.objects.create(org=org, name="ops", kind="webhook", target="https://ops.test/")
    dag_sync(org=org, yaml_text=CHECK.replace("URL", url), activate=True)
    admin = client_for(org, Role.ADMIN)
    sql = "SELECT count(*) AS n FROM transactions WHERE block_number >= 10 AND block_number < 15"

    def check_once():
        task = job_run_manual(org=org, dag_name="backfill-integrity", job_name="check")
        assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
        return IntegrityCheck.objects.get(task_id=task.pk)

    clean = check_once()  # the newest 10 blocks of the backfill's `blocks` partitions
    assert (clean.status, clean.range_start, clean.range_end) == ("clean", 5, TO_BLOCK)
    assert (clean.blocks_checked, clean.partitions_checked) == (10, 6)

    damaged_at = path_of(org, cold, "transactions", 10)
    _truncate(org, cold)
    assert admin.post("/v1/query", {"sql": sql}, format="json").status_code == 400
    found_it = check_once()
    assert (found_it.status, found_it.kinds) == ("repaired", ["checksum"])
    assert found_it.affected == [["transactions", 10, 15]]
    [[dataset, start, end, location]] = found_it.repaired
    assert (dataset, start, end) == ("transactions", 10, 15)
    committed_prefix = damaged_at.parent.as_uri() + "/"
    assert location.startswith(committed_prefix) and location != committed_prefix
    assert len(damaged_at.read_bytes()) == 100  # the damaged prefix was not overwritten

    # Recorded in the backfill's own dataset, beside the damaged partition, and invalidated.
    rebuilt = PartitionVersion.objects.get(
        location=location, dataset_version__dataset__job_name="transactions"
    )
    assert rebuilt.task_id == found_it.task_id and rebuilt.range_start == 10
    (invalidation,) = DataInvalidation.objects.filter(dataset=rebuilt.dataset_version.dataset)
    assert (invalidation.range_start, invalidation.range_end) == (10, 15)
    (delivery,) = Delivery.objects.all()  # the ops channel is told
    assert delivery.event.payload["affected"] == [["transactions", 10, 15]]

    # Queries read the rebuilt files from now on, and the next check passes over them.
    response = admin.post("/v1/query", {"sql": sql}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["rows"] == [[node_counts(url, 10, 15)["transactions"]]]
    (answering,) = [
        p
        for p in backfill_partitions(org_id=org.pk, chain_id=CHAIN)
        if (p.dataset, p.range_start) == ("transactions", 10)
    ]
    assert answering.location == location
    after = check_once()
    assert (after.status, after.mismatches, after.partitions_checked) == ("clean", 0, 6)


def test_a_gap_in_the_backfill_is_reported_and_not_rebuilt(org, backfilled, hot_engine, cold):
    from trace_web.datasets.models import DataInvalidation, IntegrityCheck, PartitionVersion
    from trace_web.orchestration.services.dags import dag_sync
    from trace_web.orchestration.services.sources import job_run_manual

    url, _ = backfilled
    PartitionVersion.objects.filter(
        dataset_version__dataset__job_name="logs", range_start=5
    ).delete()
    dag_sync(org=org, yaml_text=CHECK.replace("URL", url), activate=True)
    task = job_run_manual(org=org, dag_name="backfill-integrity", job_name="check")
    assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
    check = IntegrityCheck.objects.get(task_id=task.pk)
    assert (check.status, check.kinds) == ("mismatch", ["coverage"])
    assert check.affected == [["logs", 5, 10]] and check.repaired == []
    assert not DataInvalidation.objects.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "hot"}, "config.source: must be one of 'compacted', 'backfill'"),
        ({"source": "backfill", "rpc_url": None}, "set exactly one of rpc_pool"),
    ],
    ids=["bad-source", "no-rpc"],
)
def test_a_bad_source_is_refused_by_name(changes, message):
    config = {"chain_id": CHAIN, "rpc_url": "http://127.0.0.1:8545", **changes}
    with pytest.raises(ConfigError) as excinfo:
        config_parse(config)
    assert message in str(excinfo.value)
    fixed = {**config, "rpc_url": "http://127.0.0.1:8545"}
    assert config_parse({**fixed, "source": "backfill"}).source == "backfill"
    assert config_parse({k: v for k, v in fixed.items() if k != "source"}).source == "compacted"
