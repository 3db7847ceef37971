"""Shared by the compaction tests: a chain followed into the hot tables, compaction runs with
a recording task context, and three independent answers to "what does the chain hold per
block range" — the federated query engine, the hot tables plus the cold files read apart, and
the node itself."""

# ruff: noqa: S608 - the tests' own SQL over their own fixtures

from __future__ import annotations

import threading
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from tests.chain.test_block_follower import Recorder, node_blocks
from trace_chain import chain_schema, compaction, devchain
from trace_chain.cold_segments import segments_live
from trace_chain.db import query_reader_dsn
from trace_chain.hot_schema import hot_blocks, hot_logs, hot_transactions
from trace_chain.query.catalog import Catalog, compacted_files
from trace_chain.query.engine import Limits, query_execute
from trace_operators import parquet_compact
from trace_operators.context import TaskContext, TaskScope

CHAIN = devchain.ANVIL_CHAIN_ID
BUCKET = 7  # per-range totals over ranges that straddle the 5-block partitions
FIELDS = ("blocks", "gas", "transactions", "value", "logs")

PER_RANGE = f"""
WITH b AS (SELECT block_number // {BUCKET} AS r, count(*) AS blocks, sum(gas_used) AS gas
           FROM blocks GROUP BY 1),
     t AS (SELECT block_number // {BUCKET} AS r, count(*) AS transactions, sum(value) AS value
           FROM transactions GROUP BY 1),
     l AS (SELECT block_number // {BUCKET} AS r, count(*) AS logs FROM logs GROUP BY 1)
SELECT b.r, b.blocks, b.gas, coalesce(t.transactions, 0) AS transactions,
       coalesce(t.value, 0) AS value, coalesce(l.logs, 0) AS logs
FROM b LEFT JOIN t ON t.r = b.r LEFT JOIN l ON l.r = b.r ORDER BY b.r
"""


def compaction_config(**overrides) -> dict:
    config = {
        "chain_id": CHAIN,
        "finality_depth_blocks": 3,
        "hot_window_blocks": 4,
        "chunk_blocks": 5,
        "row_group_size": 4,
    }
    config.update(overrides)
    return config


def compact(config: dict, recorder: Recorder | None = None, *, stage=None, attempt: int = 1):
    """One parquet_compact run, as the worker runs it, its events going to `recorder`."""
    ctx = TaskContext(
        task_id=7,
        attempt=attempt,
        org_id=1,
        dag_name="chain",
        job_name="compact",
        config=config,
        scope=TaskScope(),
        emit_events=recorder if recorder is not None else Recorder(),
    )
    return parquet_compact.run(ctx, stage=stage)


def _empty() -> dict:
    return {"blocks": 0, "gas": 0, "transactions": 0, "value": Decimal(0), "logs": 0}


def _add(into: dict, other: dict) -> dict:
    for r, row in other.items():
        target = into.setdefault(r, _empty())
        for key in FIELDS:
            target[key] += row[key]
    return into


def federated_rows(tmp_path: Path, sql: str, *, cold: tuple = ()) -> list[dict]:
    """Rows of `sql` through the query engine (hot above the line, cold below it); `cold`:
    committed files of other sources (backfills) the caller may also read."""
    catalog = Catalog(
        datasets=frozenset(chain_schema.DATASETS),
        hot_chain_ids=frozenset({CHAIN}),
        cold=tuple(cold),
        hot_dsn=query_reader_dsn(),
    )
    temp = tmp_path / f"q-{threading.get_ident()}"
    result = query_execute(sql, catalog=catalog, limits=Limits(), temp_dir=temp)
    return result.table.to_pylist()


def federated(tmp_path: Path, *, cold: tuple = ()) -> dict:
    """Per-range totals through the query engine."""
    return {row.pop("r"): row for row in federated_rows(tmp_path, PER_RANGE, cold=cold)}


def hot_only(engine) -> dict:
    totals: dict = defaultdict(_empty)
    with engine.connect() as conn:
        bucket = hot_blocks.c.block_number // BUCKET
        for r, blocks, gas in conn.execute(
            sa.select(bucket, sa.func.count(), sa.func.sum(hot_blocks.c.gas_used)).group_by(bucket)
        ):
            totals[r].update(blocks=blocks, gas=gas or 0)
        bucket = hot_transactions.c.block_number // BUCKET
        for r, count, value in conn.execute(
            sa.select(bucket, sa.func.count(), sa.func.sum(hot_transactions.c.value)).group_by(
                bucket
            )
        ):
            totals[r].update(transactions=count, value=Decimal(value))
        bucket = hot_logs.c.block_number // BUCKET
        for r, count in conn.execute(sa.select(bucket, sa.func.count()).group_by(bucket)):
            totals[r]["logs"] = count
    return dict(totals)


def live_files(engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        segments = segments_live(conn, chain_id=CHAIN)
    rows = [(s.dataset, s.range_start, s.range_end, s.location, _json(s.files)) for s in segments]
    by_dataset: dict[str, list[str]] = defaultdict(list)
    for file in compacted_files(CHAIN, rows):
        by_dataset[file.dataset].append(file.path)
    return by_dataset


def _json(value) -> str:
    import json

    return json.dumps(value)


def cold_only(engine) -> dict:
    """Per-range totals of the live compacted files below the line (the lowest hot block;
    above it the hot rows answer), read with a plain DuckDB."""
    import duckdb

    files = live_files(engine)
    line = hot_low(engine)
    below = "" if line is None else f"WHERE block_number < {int(line)} "
    totals: dict = defaultdict(_empty)
    con = duckdb.connect()

    def scan(dataset: str, select: str) -> list:
        if not files.get(dataset):
            return []
        paths = ", ".join(f"'{p}'" for p in files[dataset])
        return con.execute(
            f"SELECT block_number // {BUCKET} AS r, {select} "
            f"FROM read_parquet([{paths}]) {below}GROUP BY 1"
        ).fetchall()

    for r, blocks, gas in scan("blocks", "count(*), sum(gas_used)"):
        totals[r].update(blocks=blocks, gas=gas or 0)
    for r, count, value in scan("transactions", "count(*), sum(value)"):
        totals[r].update(transactions=count, value=Decimal(value))
    for r, count in scan("logs", "count(*)"):
        totals[r]["logs"] = count
    con.close()
    return dict(totals)


def node_totals(url: str, tip: int) -> dict:
    node = node_blocks(url, 0, tip + 1)
    totals: dict = defaultdict(_empty)
    for block in node.blocks:
        row = totals[block["number"] // BUCKET]
        row["blocks"] += 1
        row["gas"] += block["gas_used"] or 0
    for tx in node.transactions:
        row = totals[tx["block_number"] // BUCKET]
        row["transactions"] += 1
        row["value"] += Decimal(tx["value"])
    for entry in node.logs:
        totals[entry["block_number"] // BUCKET]["logs"] += 1
    return dict(totals)


def assert_totals(engine, url: str, tip: int, tmp_path: Path) -> dict:
    """Federated = hot-only + cold-only = the node, range by range."""
    expected = node_totals(url, tip)
    assert federated(tmp_path) == expected
    assert _add(_add({}, hot_only(engine)), cold_only(engine)) == expected
    return expected


def hot_low(engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.min(hot_blocks.c.block_number))).scalar()


def live(engine, dataset: str = "blocks") -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return [
            (s.range_start, s.range_end)
            for s in segments_live(conn, chain_id=CHAIN, dataset=dataset)
        ]


def expected_line(tip: int, config: dict) -> int:
    """Where the line must be after a run: the last chunk boundary that is both final and
    outside the hot window."""
    final_end = tip - config["finality_depth_blocks"] + 1
    size = config["chunk_blocks"]
    compacted = (final_end // size) * size
    return min(compacted, tip + 1 - config["hot_window_blocks"])


__all__ = ["compaction"]


def follow_in_process(url: str, engine, *, after_announce=lambda: None):
    """Claim the active DAG's `follow` source task and run its follower to the node's tip in
    this process: each announcement committed through the lease (task_events), routed at once
    (outbox_drain), then `after_announce()`. Returns the follower (its `tip`)."""
    from tests.chain.test_block_follower import catch_up
    from trace_chain.adapter import ChainAdapter
    from trace_chain.rpc import RpcPool
    from trace_operators.block_follower import Follower, config_parse
    from trace_web.orchestration.models import Task
    from trace_web.orchestration.services.outbox import outbox_drain
    from trace_web.orchestration.services.tasks import task_claim, task_events

    follow = Task.objects.get(job__name="follow")
    claimed = task_claim(task_id=follow.pk, worker_id="stream")

    def announce(events):
        accepted = task_events(lease=claimed.lease, events=events)
        outbox_drain()
        after_announce()
        return accepted

    ctx = TaskContext(
        task_id=follow.pk,
        attempt=follow.attempt,
        org_id=follow.org_id,
        dag_name=follow.job.dag_version.name,
        job_name="follow",
        config=follow.job.config,
        scope=TaskScope(),
        emit_events=announce,
    )
    with RpcPool("test", [url], timeout=10.0, max_retries=1) as pool:
        follower = Follower(ctx, config_parse(follow.job.config), ChainAdapter(pool), engine)
        follower.resume()
        catch_up(follower)
    return follower
