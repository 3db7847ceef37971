"""Iceberg tables over committed cold partitions, on a real anvil chain compacted into a real
object store, with pyiceberg's SQL catalog on the test's data DB: DuckDB's `iceberg_scan` and a
pyiceberg scan read exactly the rows Trace's own query reads; a range rebuilt after a deep
reorg replaces its files in one snapshot (every snapshot holds each block once); re-running
changes nothing; a sync that dies before its commit is finished by the next; the operator,
the command and the Glue catalog (moto over HTTP)."""

# ruff: noqa: S608 - the tests' own SQL over their own fixtures

from __future__ import annotations

import itertools
import uuid

import duckdb
import pytest

from tests.chain.compaction_helpers import CHAIN, compact, compaction_config, hot_low, live
from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from trace_chain import chain_schema, devchain, iceberg
from trace_chain.db import query_reader_dsn
from trace_chain.query.catalog import Catalog, ColdFile
from trace_chain.query.engine import Limits, query_execute
from trace_operators.context import LeaseLost, PermanentError

ORG = 3
DATASETS = ("blocks", "transactions", "logs")
EVERYTHING = compaction_config(finality_depth_blocks=0, hot_window_blocks=0)


class Crash(Exception):
    pass


@pytest.fixture
def settings(cold, monkeypatch):
    monkeypatch.setenv(iceberg.NAMESPACE_ENV, f"t{uuid.uuid4().hex[:12]}")
    return iceberg.iceberg_settings_from_env()


@pytest.fixture
def compacted(fresh_anvil, hot_engine, cold):
    """Twenty-odd blocks with transfers and logs, all of them compacted into cold."""
    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=12, txs_per_block=2)
    follower = make_follower(url, hot_engine, Recorder(), batch_size=50)
    _to_boundary(url, follower)
    compact(EVERYTHING)
    assert hot_low(hot_engine) is None  # the whole chain is cold: Trace reads only cold files
    return url, follower


def _to_boundary(url, follower) -> None:
    catch_up(follower)
    devchain.mine(url, (5 - (follower.tip + 1) % 5) % 5)
    catch_up(follower)


def _catalog() -> Catalog:
    return Catalog(
        datasets=frozenset(chain_schema.DATASETS),
        hot_chain_ids=frozenset({CHAIN}),
        hot_dsn=query_reader_dsn(),
    )


def _sync(settings, hot_engine, dataset, *, before_commit=lambda: None):
    with hot_engine.connect() as conn:
        return iceberg.dataset_sync(
            catalog=_catalog(),
            iceberg=iceberg.iceberg_catalog(settings),
            settings=settings,
            org_id=ORG,
            chain_id=CHAIN,
            dataset=dataset,
            data_conn=conn,
            before_commit=before_commit,
        )


def _rows(table) -> list[tuple]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


def _trace_rows(dataset: str, tmp_path) -> list[tuple]:
    columns = ", ".join(chain_schema.column_names(dataset))
    result = query_execute(
        f"SELECT {columns} FROM {dataset}",
        catalog=_catalog(),
        limits=Limits(max_rows=100_000),
        temp_dir=tmp_path / f"q-{uuid.uuid4().hex}",
    )
    assert not result.truncated
    return _rows(result.table)


def _duckdb_rows(dataset: str, metadata_location: str) -> list[tuple]:
    columns = ", ".join(chain_schema.column_names(dataset))
    conn = iceberg.duckdb_iceberg(duckdb.connect())
    try:
        where = metadata_location.replace("'", "''")
        return _rows(
            conn.execute(f"SELECT {columns} FROM iceberg_scan('{where}')").to_arrow_table()
        )
    finally:
        conn.close()


def _table(settings, dataset):
    identifier = iceberg.table_identifier(settings, org_id=ORG, chain_id=CHAIN, dataset=dataset)
    return iceberg.iceberg_catalog(settings).load_table(identifier)


def _assert_same_rows(settings, dataset, result, tmp_path) -> list[tuple]:
    expected = _trace_rows(dataset, tmp_path)
    assert expected  # the chain has rows of every dataset compared
    assert _duckdb_rows(dataset, result.metadata_location) == expected
    assert _rows(_table(settings, dataset).scan().to_arrow()) == expected
    return expected


def test_external_engines_read_exactly_what_trace_reads(compacted, hot_engine, settings, tmp_path):
    for dataset in DATASETS:
        result = _sync(settings, hot_engine, dataset)
        # Every live compacted file registered in place, none rewritten.
        assert len(result.added) == len(live(hot_engine, dataset)) and result.removed == []
        assert all(path.startswith("file:///") for path in result.added)
        _assert_same_rows(settings, dataset, result, tmp_path)


def test_a_rebuilt_range_replaces_its_files_in_one_snapshot(
    compacted, hot_engine, settings, tmp_path
):
    url, follower = compacted
    first = {d: _sync(settings, hot_engine, d) for d in DATASETS}
    old_blocks = _trace_rows("blocks", tmp_path)
    # A reorg deeper than everything hot: compaction rebuilds the ranges it reaches (new
    # revisions, the old segments replaced).
    devchain.reorg(url, 8)
    follower.step()
    _to_boundary(url, follower)
    compact(EVERYTHING)
    assert _trace_rows("blocks", tmp_path) != old_blocks  # other hashes from the fork on

    for dataset in DATASETS:
        before = first[dataset]
        # Dies just before its commit: the table is as it was (same snapshot, same rows).
        with pytest.raises(Crash):
            _sync(settings, hot_engine, dataset, before_commit=_raise)
        table = _table(settings, dataset)
        assert table.current_snapshot().snapshot_id == before.snapshot_id
        # The next run converges: the rebuilt files in, the superseded ones out, one commit.
        result = _sync(settings, hot_engine, dataset)
        assert result.added and result.removed
        assert set(result.removed) <= set(before.added) and result.snapshot_id != before.snapshot_id
        rows = _assert_same_rows(settings, dataset, result, tmp_path)
        table = _table(settings, dataset)
        assert len(table.snapshots()) == 2  # the first registration and the one replacement
        # Every snapshot holds each block range once: no overlapping files, and for blocks
        # exactly one row per block number.
        for snapshot_id, files in iceberg.snapshot_files(table):
            ranges = sorted(_file_range(path) for path in files)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))
            assert ranges[0][0] == 0 and ranges[-1][1] <= follower.tip + 1
            if dataset == "blocks":  # (a rebuilt range without transactions has no file)
                assert ranges[-1][1] == follower.tip + 1
                numbers = [
                    r["block_number"]
                    for r in table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
                ]
                assert sorted(numbers) == list(range(follower.tip + 1))
        # Running again changes nothing: no new snapshot.
        again = _sync(settings, hot_engine, dataset)
        assert not again.changed and again.snapshot_id == result.snapshot_id
        assert len(_table(settings, dataset).snapshots()) == 2
        assert _rows(_table(settings, dataset).scan().to_arrow()) == rows


def test_segments_a_deep_reorg_left_above_the_line_leave_the_table(
    compacted, hot_engine, settings, tmp_path
):
    """Before compaction rebuilds them, the stale segments above the moved line are not what
    Trace reads (hot answers there): the table drops them, keeping what cold still answers."""
    url, follower = compacted
    first = _sync(settings, hot_engine, "blocks")
    devchain.reorg(url, 8)
    follower.step()  # rewinds to the first segment the node disagrees with
    catch_up(follower)  # and writes the hot rows again from there
    line = hot_low(hot_engine)
    assert line is not None and 0 < line <= follower.tip
    result = _sync(settings, hot_engine, "blocks")
    assert result.added == [] and result.removed  # the stale segments go
    assert sorted(result.removed) == sorted(p for p in first.added if _file_range(p)[0] >= line)
    columns = ", ".join(chain_schema.column_names("blocks"))
    expected = query_execute(
        f"SELECT {columns} FROM blocks WHERE block_number < {line}",
        catalog=_catalog(),
        limits=Limits(),
        temp_dir=tmp_path / "q-line",
    ).table
    assert _rows(_table(settings, "blocks").scan().to_arrow()) == _rows(expected)


def _raise() -> None:
    raise Crash("killed between reading the files and committing")


def _file_range(path: str) -> tuple[int, int]:
    name = path.rsplit("/", 1)[-1].removesuffix(".parquet")
    start, end = name.rsplit("__", 1)[1].split("_to_")
    return int(start), int(end) + 1


def _file(start: int, end: int, *, priority: int = 0, path: str = "", rows=None) -> ColdFile:
    return ColdFile(
        dataset="blocks",
        chain_id=CHAIN,
        path=path or f"/cold/{start}_{end}.parquet",
        range_start=start,
        range_end=end,
        schema_version=chain_schema.SCHEMA_VERSION,
        priority=priority,
        rows=rows,
    )


def test_the_plan_takes_each_block_from_the_file_trace_reads_it_from():
    backfill = _file(0, 20)  # overlapped wholly by higher-priority files: left out
    newer = [_file(0, 10, priority=5), _file(10, 20, priority=5)]
    straddling = _file(15, 30)  # answers only for [20, 30): cannot be registered in part
    tail = _file(30, 40, rows=10)
    empty = _file(40, 50, rows=0)  # answers with no rows: nothing to register
    catalog = Catalog(
        datasets=frozenset({"blocks"}),
        cold=(backfill, *newer, straddling, tail, _file(0, 5), empty),
    )
    plan = iceberg.registration_plan(catalog, chain_id=CHAIN, dataset="blocks")
    assert plan.files == (*newer, tail)
    assert plan.partial == (straddling,)
    other_chain = iceberg.registration_plan(catalog, chain_id=CHAIN + 1, dataset="blocks")
    assert other_chain.files == () and other_chain.partial == ()


def test_settings_are_checked_by_name(cold):
    with pytest.raises(iceberg.IcebergConfigError, match=iceberg.CATALOG_ENV):
        iceberg.iceberg_settings_from_env({iceberg.CATALOG_ENV: "hive"})
    with pytest.raises(iceberg.IcebergConfigError, match=iceberg.NAMESPACE_ENV):
        iceberg.iceberg_settings_from_env({iceberg.NAMESPACE_ENV: "Bad-Name"})
    with pytest.raises(iceberg.IcebergConfigError, match=iceberg.WAREHOUSE_ENV):
        iceberg.iceberg_settings_from_env({iceberg.WAREHOUSE_ENV: "relative/dir"})
    with pytest.raises(iceberg.IcebergConfigError, match=iceberg.GLUE_REGION_ENV):
        iceberg.iceberg_settings_from_env({iceberg.CATALOG_ENV: "glue"})
    glue = iceberg.iceberg_settings_from_env(
        {
            iceberg.CATALOG_ENV: "glue",
            "AWS_REGION": "eu-west-1",
            iceberg.WAREHOUSE_ENV: "s3://bucket/iceberg/",
        }
    )
    assert (glue.catalog, glue.glue_region, glue.warehouse, glue.sql_url) == (
        "glue",
        "eu-west-1",
        "s3://bucket/iceberg",
        None,
    )


def test_the_operator_syncs_every_configured_dataset(compacted, hot_engine, settings, tmp_path):
    from trace_operators.context import TaskContext, TaskScope
    from trace_operators.registry import operator_get

    def context(**overrides) -> TaskContext:
        fields = {
            "task_id": 9,
            "attempt": 1,
            "org_id": ORG,
            "dag_name": "chain",
            "job_name": "iceberg",
            "config": {"chain_id": CHAIN, "datasets": ["blocks", "logs"]},
            "scope": TaskScope(),
            "cold_catalog": _catalog,
        }
        return TaskContext(**{**fields, **overrides})

    ctx = context()
    summary = operator_get("iceberg_sync")(ctx)
    assert sorted(summary) == ["blocks", "logs"] and ctx.outputs == []
    for dataset in ("blocks", "logs"):
        assert summary[dataset]["added"] == len(live(hot_engine, dataset))
        assert summary[dataset]["table"] == f"{settings.namespace}.org{ORG}_chain{CHAIN}_{dataset}"
        assert _duckdb_rows(dataset, summary[dataset]["metadata_location"]) == _trace_rows(
            dataset, tmp_path
        )
    assert not iceberg.iceberg_catalog(settings).table_exists(
        iceberg.table_identifier(settings, org_id=ORG, chain_id=CHAIN, dataset="transactions")
    )
    again = operator_get("iceberg_sync")(context())
    assert [again[d]["added"] + again[d]["removed"] for d in ("blocks", "logs")] == [0, 0]
    assert again["blocks"]["snapshot_id"] == summary["blocks"]["snapshot_id"]
    # A lost lease stops it before any commit; outside the platform runtime it refuses.
    lost = context(config={"chain_id": CHAIN, "datasets": ["transactions"]})
    lost.stop_event.set()
    with pytest.raises(LeaseLost):
        operator_get("iceberg_sync")(lost)
    with pytest.raises(PermanentError, match="platform runtime"):
        operator_get("iceberg_sync")(context(cold_catalog=None))


def test_the_operator_config_is_checked_field_by_field():
    from trace_operators.registry import operator_config_problems

    assert operator_config_problems("iceberg_sync", {"chain_id": CHAIN}, "platform") == []
    problems = dict(
        operator_config_problems(
            "iceberg_sync",
            {"chain_id": "1", "datasets": ["blocks", "blocks"], "extra": 1},
            "udf",
        )
    )
    assert set(problems) == {"runtime", "config.chain_id", "config.datasets", "config.extra"}
    assert "at most once" in problems["config.datasets"]
    bad = dict(operator_config_problems("iceberg_sync", {"chain_id": 1, "datasets": ["x"]}, None))
    assert set(bad) == {"config.datasets[0]"}


FOLLOW = f"""
name: follow
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {CHAIN}, rpc_pool: devchain}}
"""


def test_the_command_syncs_what_the_org_reads_and_nothing_of_another_org(
    compacted, hot_engine, settings, org, other_org, capsys, tmp_path
):
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from trace_web.orchestration.services.dags import dag_sync

    dag_sync(org=org, yaml_text=FOLLOW, activate=True)  # acme follows the chain; globex not
    call_command(
        "iceberg", "sync", "--org", org.slug, "--chain-id", str(CHAIN), "--dataset", "logs"
    )
    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["dataset"] == "logs" and line["added"] == len(live(hot_engine, "logs"))
    assert line["table"] == f"{settings.namespace}.org{org.pk}_chain{CHAIN}_logs"
    assert _duckdb_rows("logs", line["metadata_location"]) == _trace_rows("logs", tmp_path)
    call_command("iceberg", "sync", "--org", other_org.slug, "--chain-id", str(CHAIN))
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert [(x["dataset"], x["added"]) for x in lines] == [(d, 0) for d in chain_schema.DATASETS]
    with pytest.raises(CommandError, match="no org 'nobody'"):
        call_command("iceberg", "sync", "--org", "nobody", "--chain-id", str(CHAIN))


def test_the_glue_catalog_over_moto_registers_and_replaces_in_one_snapshot(monkeypatch, tmp_path):
    """TRACE_ICEBERG_CATALOG=glue against moto's Glue and S3 over real HTTP on loopback: the
    database is Terraform's (created here by hand), metadata and data on S3."""
    import boto3
    import pyarrow as pa

    from tests.chain.test_object_store import moto_s3_server, s3_bucket_create

    with moto_s3_server() as endpoint:
        bucket = s3_bucket_create(endpoint, monkeypatch)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # boto3 (Glue) and the S3 file IO
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv(iceberg.CATALOG_ENV, "glue")
        database = f"trace_{uuid.uuid4().hex[:12]}"  # moto's state outlives its server
        monkeypatch.setenv(iceberg.NAMESPACE_ENV, database)
        monkeypatch.setenv(iceberg.WAREHOUSE_ENV, f"s3://{bucket}/iceberg")
        boto3.client("glue", endpoint_url=endpoint).create_database(
            DatabaseInput={"Name": database}
        )
        s3 = boto3.client("s3", endpoint_url=endpoint)

        def upload(start: int, end: int, tag: str) -> str:
            rows = [_block(b, tag) for b in range(start, end)]
            path = tmp_path / f"{tag}{start}.parquet"
            table = pa.Table.from_pylist(rows, schema=chain_schema.arrow_schema("blocks"))
            chain_schema.parquet_write(table, path)
            key = f"1/blocks/{start:08}_{end - 1:08}/{tag}/b.parquet"
            s3.upload_file(str(path), bucket, key)
            return f"s3://{bucket}/{key}"

        settings = iceberg.iceberg_settings_from_env()
        assert settings.catalog == "glue" and settings.s3_endpoint == endpoint
        catalog = iceberg.iceberg_catalog(settings)
        name = iceberg.table_identifier(settings, org_id=ORG, chain_id=1, dataset="blocks")
        old = [upload(0, 5, "a"), upload(5, 10, "a")]
        first = iceberg.table_sync(catalog=catalog, identifier=name, dataset="blocks", files=old)
        assert first.added == old and first.metadata_location.startswith(f"s3://{bucket}/")
        rebuilt = [old[0], upload(5, 10, "b")]
        second = iceberg.table_sync(
            catalog=catalog, identifier=name, dataset="blocks", files=rebuilt
        )
        assert second.removed == [old[1]] and second.added == [rebuilt[1]]
        table = iceberg.iceberg_catalog(settings).load_table(name)
        hashes = [
            sorted(r["block_hash"] for r in table.scan(snapshot_id=s).to_arrow().to_pylist())
            for s, _ in iceberg.snapshot_files(table)
        ]
        assert hashes == [
            sorted(_block(b, "a")["block_hash"] for b in range(10)),
            sorted(_block(b, "a" if b < 5 else "b")["block_hash"] for b in range(10)),
        ]
        glue = boto3.client("glue", endpoint_url=endpoint)
        stored = glue.get_table(DatabaseName=database, Name=name[1])["Table"]
        assert stored["Parameters"]["metadata_location"] == second.metadata_location


def _block(number: int, tag: str) -> dict:
    return {
        "chain_id": 1,
        "block_number": number,
        "block_hash": f"0x{tag}{number:063x}",
        "parent_hash": f"0x{number:064x}",
        "timestamp": number,
        "miner": None,
        "gas_used": number,
        "base_fee_per_gas": None,
        "size": 1,
        "extra_data": "0x",
    }
