"""Synthetic chain history for bench/query.py: one chain's blocks and transactions in the one
chain schema, written as committed cold partitions the way cryo_ingest publishes them (files,
manifest, _SUCCESS; a PartitionVersion per partition) and as hot rows above the line."""

# ruff: noqa: S608 - trusted bench code writing its own SQL from ints and its own paths

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from trace_chain import chain_schema, cold_layout

CHAIN_ID = 31337  # anvil's
DATASETS = ("blocks", "transactions")  # logs stay empty: the queries read transactions


@dataclass(frozen=True)
class History:
    """Cold blocks [0, blocks), hot blocks [blocks, blocks + hot_blocks) (the line is
    `blocks`), `per_block` transactions in every block."""

    blocks: int
    per_block: int
    hot_blocks: int

    @property
    def cold_rows(self) -> int:
        return self.blocks * self.per_block

    @property
    def hot_rows(self) -> int:
        return self.hot_blocks * self.per_block


def rows_sql(dataset: str, start: int, end: int, per_block: int) -> str:
    """Deterministic rows of `[start, end)`, in the canonical columns and key order: the same
    block always gets the same hashes, so every layout holds the same values."""
    block_hash = "'0x' || md5('b' || b) || md5('B' || b)"
    if dataset == "blocks":
        return f"""
            SELECT {CHAIN_ID}::BIGINT AS chain_id, b::BIGINT AS block_number,
                   {block_hash} AS block_hash,
                   '0x' || md5('b' || (b - 1)) || md5('B' || (b - 1)) AS parent_hash,
                   (1700000000 + 12 * b)::BIGINT AS timestamp,
                   '0x' || lpad(to_hex(b % 16), 40, '0') AS miner,
                   (21000 * {per_block})::BIGINT AS gas_used,
                   (1000000000 + b % 1000)::DECIMAL(38, 0) AS base_fee_per_gas,
                   (500 + 120 * {per_block})::BIGINT AS size, '0x' AS extra_data
            FROM range({start}, {end}) r(b) ORDER BY b"""
    return f"""
        SELECT {CHAIN_ID}::BIGINT AS chain_id, b::BIGINT AS block_number,
               {block_hash} AS block_hash, t::BIGINT AS transaction_index,
               '0x' || md5('t' || b || '.' || t) || md5('T' || b || '.' || t)
                   AS transaction_hash,
               '0x' || lpad(to_hex((b * 7 + t * 13) % 1000), 40, '0') AS from_address,
               CASE WHEN (b + t) % 50 = 0 THEN NULL
                    ELSE '0x' || lpad(to_hex((b * 3 + t) % 5000), 40, '0') END AS to_address,
               ((b * 1000 + t) * 1000000000)::DECIMAL(38, 0) AS value,
               (21000 + (b * 31 + t * 17) % 200000)::BIGINT AS gas_limit,
               (1000000000 + (b + t) % 5000)::DECIMAL(38, 0) AS gas_price,
               CAST(NULL AS DECIMAL(38, 0)) AS max_fee_per_gas,
               CAST(NULL AS DECIMAL(38, 0)) AS max_priority_fee_per_gas,
               '0xa9059cbb' || lpad(to_hex(b * 1000 + t), 64, '0') AS input,
               (b + t)::BIGINT AS nonce, 0::BIGINT AS transaction_type,
               (b + t) % 97 <> 0 AS success,
               (21000 + (b * 13 + t * 7) % 100000)::BIGINT AS gas_used
        FROM range({start}, {end}) r(b), range({per_block}) s(t) ORDER BY b, t"""


@dataclass(frozen=True)
class Committed:
    dataset: str
    range_start: int
    range_end: int
    location: str
    manifest: dict
    path: str  # the file as DuckDB reads it


def cold_write(history: History, *, chunk: int, store, config: dict) -> list[Committed]:
    """Every dataset of [0, history.blocks) as one partition per `chunk` blocks (one file
    each, as a chain_sync with that chunk size commits them), published into `store`.
    `config` is the cryo_ingest job config without `dataset` (its hash names the prefix)."""
    import duckdb

    from trace_operators.cryo_ingest import content_config

    con = duckdb.connect()
    committed: list[Committed] = []
    staging = Path(tempfile.mkdtemp(prefix="trace-bench-staging-"))
    for dataset in DATASETS:
        identity = content_config({**config, "dataset": dataset})
        digest = cold_layout.config_hash(identity)
        schema = chain_schema.arrow_schema(dataset)
        for start, end in cold_layout.chunk_ranges(0, history.blocks, chunk):
            partition = cold_layout.ColdPartition(
                chain_id=CHAIN_ID,
                chain=identity["chain"],
                dataset=dataset,
                config_hash=digest,
                range_start=start,
                range_end=end,
            )
            (name,) = partition.file_names()
            path = staging / name
            table = con.execute(rows_sql(dataset, start, end, history.per_block))
            chain_schema.parquet_write(table.to_arrow_table().cast(schema), path)
            manifest = cold_layout.manifest_build(
                partition=partition, identity=identity, paths=[path], producer={"bench": 1}
            )
            published = cold_layout.partition_publish(
                store=store, partition=partition, files={name: path}, manifest=manifest
            )
            path.unlink()
            committed.append(
                Committed(
                    dataset=dataset,
                    range_start=start,
                    range_end=end,
                    location=published.location,
                    manifest=published.manifest,
                    path=str(store.root / partition.key(name)),
                )
            )
    con.close()
    staging.rmdir()
    return committed


def hot_write(history: History, *, superuser_dsn: str) -> None:
    """The blocks from the line on, in the data DB's hot tables (what a follower leaves)."""
    import duckdb

    from trace_chain.query.hardening import extension_path

    start, end = history.blocks, history.blocks + history.hot_blocks
    con = duckdb.connect()
    con.execute(f"LOAD '{extension_path('postgres_scanner')}'")
    con.execute(f"ATTACH '{superuser_dsn}' AS pg (TYPE postgres)")
    for dataset in DATASETS:
        columns = ", ".join(chain_schema.column_names(dataset))
        con.execute(
            f"INSERT INTO pg.public.hot_{dataset} ({columns}) "
            f"{rows_sql(dataset, start, end, history.per_block)}"
        )
    con.close()


def backfill_dag(name: str, config: dict) -> str:
    """A DAG whose jobs are the cryo_ingest datasets the registry lists the partitions under."""
    options = ", ".join(f"{key}: {value}" for key, value in config.items())
    jobs = "".join(
        f"  - {{name: {dataset}, activation: manual, operator: cryo_ingest, "
        f"config: {{{options}, dataset: {dataset}}}}}\n"
        for dataset in DATASETS
    )
    return f"name: {name}\njobs:\n{jobs}"


FOLLOW_DAG = f"""
name: follow
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {CHAIN_ID}, rpc_pool: bench}}
"""


def register(
    *, org, dag_name: str, config: dict, committed: list[Committed], follow: bool = True
) -> None:
    """The org backfilled these partitions (a committed PartitionVersion each) and, with
    `follow`, follows the chain (its hot rows count)."""
    from trace_web.datasets.models import Dataset, PartitionVersion
    from trace_web.orchestration.services.dags import dag_sync

    if follow:
        dag_sync(org=org, yaml_text=FOLLOW_DAG, activate=True)
    dag_sync(org=org, yaml_text=backfill_dag(dag_name, config), activate=True)
    versions = {
        dataset: Dataset.objects.get(org=org, dag_name=dag_name, job_name=dataset).versions.get()
        for dataset in DATASETS
    }
    PartitionVersion.objects.bulk_create(
        PartitionVersion(
            dataset_version=versions[c.dataset],
            partition_key=f"{c.range_start}_{c.range_end}",
            range_start=c.range_start,
            range_end=c.range_end,
            location=c.location,
            row_count=c.manifest["row_count"],
            bytes=c.manifest["bytes"],
            config_hash=c.manifest["config_hash"],
            schema_hash=c.manifest["schema_hash"],
            manifest=c.manifest,
        )
        for c in committed
    )
