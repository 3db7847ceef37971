"""Cold files on S3 (moto's real S3 over HTTP on loopback) read through the query service:
the sandbox gets credentials from the same chain the object store uses, and reads exactly the
committed objects; with no credentials the query is refused as the platform's fault (503)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.chain.test_object_store import moto_s3_server, s3_bucket_create
from trace_chain import chain_schema
from trace_chain.query.catalog import Catalog, ColdFile


def blocks_table(start: int, end: int):
    rows = [
        {
            "chain_id": 31337,
            "block_number": n,
            "block_hash": "0x" + f"{n:064x}",
            "parent_hash": "0x" + f"{max(n - 1, 0):064x}",
            "timestamp": 1_700_000_000 + n,
            "miner": "0x" + "00" * 20,
            "gas_used": 21_000 * n,
            "base_fee_per_gas": None,
            "size": 500,
            "extra_data": "0x",
        }
        for n in range(start, end)
    ]
    return pa.Table.from_pylist(rows, schema=chain_schema.arrow_schema("blocks"))


@pytest.fixture
def s3_cold(monkeypatch, tmp_path):
    import boto3

    with moto_s3_server() as endpoint:
        bucket = s3_bucket_create(endpoint, monkeypatch)
        monkeypatch.setenv("TRACE_S3_ENDPOINT_URL", endpoint)
        local = tmp_path / "blocks.parquet"
        chain_schema.parquet_write(blocks_table(0, 40), local)
        key = "31337/blocks/x/00000000_00000039/anvil__blocks__00000000_to_00000039.parquet"
        boto3.client("s3", endpoint_url=endpoint).upload_file(str(local), bucket, key)
        path = f"s3://{bucket}/{key}"
        yield Catalog(
            datasets=frozenset(chain_schema.DATASETS),
            cold=(ColdFile("blocks", 31337, path, 0, 40, chain_schema.SCHEMA_VERSION),),
        )


def run(catalog, sql):
    from trace_web.query.services import query_run

    return query_run(sql=sql, catalog=catalog, org_id=1, timeout_seconds=30, max_rows=100)


def test_cold_files_on_s3_are_read_with_the_object_stores_credentials(s3_cold, hot_engine):
    outcome = run(s3_cold, "SELECT count(*), sum(gas_used), max(block_number) FROM blocks")
    assert outcome.table.to_pylist() == [
        {"count_star()": 40, "sum(gas_used)": 21_000 * sum(range(40)), "max(block_number)": 39}
    ]


def test_without_credentials_an_s3_query_is_the_platforms_fault(s3_cold, hot_engine, monkeypatch):
    from trace_web.query.services import QueryUnavailable

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    with pytest.raises(QueryUnavailable) as refused:
        run(s3_cold, "SELECT count(*) FROM blocks")
    assert "no AWS credentials" in refused.value.message
