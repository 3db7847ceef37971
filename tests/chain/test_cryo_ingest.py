"""cryo_ingest against a real anvil node: what lands in the object store matches the node, the
same range always maps to the same prefix, conflicts fail loudly, staging stays private and
gets cleaned, caps stop uploads, and the S3 path works (moto over HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.chain.test_object_store import moto_s3_server, s3_bucket_create
from trace_chain import chain_schema, cold_layout, devchain
from trace_chain.object_store import LocalObjectStore, object_store_from_env
from trace_chain.rpc import RpcPool
from trace_operators import cryo_ingest
from trace_operators.context import LeaseLost, PermanentError, TaskContext, TaskScope
from trace_operators.registry import operator_get

CHAIN_ID = devchain.ANVIL_CHAIN_ID


def staging_root(tmp_path: Path) -> Path:
    return tmp_path / "staging" / "cryo_ingest"


def make_ctx(config, start, end, *, task_id=1, attempt=1, partition_key=None) -> TaskContext:
    return TaskContext(
        task_id=task_id,
        attempt=attempt,
        org_id=1,
        dag_name="cold",
        job_name="backfill",
        config=config,
        scope=TaskScope(range_start=start, range_end=end, partition_key=partition_key),
    )


def ingest(url, dataset, start, end, **config):
    ctx = make_ctx({"chain_id": CHAIN_ID, "dataset": dataset, "rpc_url": url, **config}, start, end)
    result = cryo_ingest.run(ctx)
    return ctx, result


def node_counts(url: str, start: int, end: int) -> dict[str, int]:
    """What the node itself says is in `[start, end)`."""
    with RpcPool("check", [url]) as pool:
        blocks = pool.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(start, end)])
        logs = pool.call("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(end - 1)}])
    return {
        "blocks": sum(b is not None for b in blocks),
        "transactions": sum(len(b["transactions"]) for b in blocks),
        "logs": len(logs),
    }


def read_rows(store: LocalObjectStore, location_prefix: str, manifest) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for entry in manifest["files"]:
        path = store.root / (location_prefix + entry["name"])
        rows += pq.read_table(path).to_pylist()
    return rows


# --- what lands matches the node --------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["blocks", "transactions", "logs"])
def test_parquet_rows_equal_the_nodes(chain_with_traffic, cold, dataset):
    chain = chain_with_traffic
    ctx, _ = ingest(chain.url, dataset, chain.start, chain.end_exclusive)
    expected = node_counts(chain.url, chain.start, chain.end_exclusive)
    assert expected["transactions"] > 0 and expected["logs"] > 0  # the fixture made traffic

    (output,) = ctx.outputs  # exactly one publication
    publication = output["publication"]
    manifest = publication["manifest"]
    assert manifest["row_count"] == publication["row_count"] == expected[dataset]
    output_fields, publication_fields = fields_the_control_plane_accepts()
    assert set(output) <= output_fields
    assert set(publication) == publication_fields
    assert (output["range_start"], output["range_end"]) == (chain.start, chain.end_exclusive)
    assert output["partition_key"] == f"{chain.start}_{chain.end_exclusive}"

    partition_prefix = (
        f"{CHAIN_ID}/{dataset}/{publication['config_hash'][:16]}/"
        f"{chain.start:08}_{chain.end_exclusive - 1:08}/"
    )
    assert publication["location"] == cold.uri(partition_prefix)
    name = f"anvil__{dataset}__{chain.start:08}_to_{chain.end_exclusive - 1:08}.parquet"
    assert cold.list(partition_prefix) == sorted(
        [partition_prefix + name, partition_prefix + "manifest.json", partition_prefix + "_SUCCESS"]
    )
    assert json.loads(cold.get_bytes(partition_prefix + "manifest.json")) == manifest
    (entry,) = manifest["files"]
    data = cold.get_bytes(partition_prefix + name)
    assert entry["bytes"] == len(data) == publication["bytes"]
    assert entry["sha256"] == cold_layout.sha256_hex(data)

    rows = read_rows(cold, partition_prefix, manifest)
    assert {r["block_number"] for r in rows} <= set(range(chain.start, chain.end_exclusive))
    # The one chain schema: its columns in its order, hex text, 64-bit numbers.
    assert manifest["schema_version"] == chain_schema.SCHEMA_VERSION
    assert [f["name"] for f in manifest["schema"]] == chain_schema.column_names(dataset)
    assert [r["block_number"] for r in rows] == sorted(r["block_number"] for r in rows)
    if dataset == "transactions":
        assert {r["transaction_hash"] for r in rows} == set(chain.traffic.tx_hashes)
        assert all(isinstance(r["success"], bool) for r in rows)
    if dataset == "blocks":
        assert all(r["parent_hash"].startswith("0x") for r in rows)  # kept for integrity checks


def fields_the_control_plane_accepts() -> tuple[set[str], set[str]]:
    from trace_web.orchestration.task_reports import OutputItem, Publication

    return set(OutputItem.model_fields), set(Publication.model_fields)


def test_logs_can_be_filtered_by_contract(chain_with_traffic, cold):
    chain = chain_with_traffic
    other = "0x" + "11" * 20
    _, mine = ingest(chain.url, "logs", chain.start, chain.end_exclusive, contract=chain.emitter)
    _, none = ingest(chain.url, "logs", chain.start, chain.end_exclusive, contract=[other])
    assert (
        mine.manifest["row_count"]
        == node_counts(chain.url, chain.start, chain.end_exclusive)["logs"]
    )
    assert none.manifest["row_count"] == 0
    assert mine.location != none.location  # filters change content, so the version


def test_operator_is_registered():
    assert operator_get("cryo_ingest") is cryo_ingest.run


# --- same range, same prefix; conflicts fail loudly -------------------------------------------


def test_rerun_maps_to_the_same_prefix_and_publishes_without_reuploading(chain_with_traffic, cold):
    chain = chain_with_traffic
    first_ctx, first = ingest(chain.url, "transactions", chain.start, chain.end_exclusive)
    keys = cold.list("")
    mtimes = {k: (cold.root / k).stat().st_mtime_ns for k in keys}
    # A retry of the same task and an unrelated task for the same range agree on everything.
    for task_id, attempt in [(1, 2), (99, 1)]:
        ctx = make_ctx(
            {"chain_id": CHAIN_ID, "dataset": "transactions", "rpc_url": chain.url},
            chain.start,
            chain.end_exclusive,
            task_id=task_id,
            attempt=attempt,
        )
        again = cryo_ingest.run(ctx)
        assert again.status == "identical"
        assert again.location == first.location
        assert again.manifest == first.manifest
        assert ctx.outputs == first_ctx.outputs
    assert cold.list("") == keys
    assert {k: (cold.root / k).stat().st_mtime_ns for k in keys} == mtimes  # nothing rewritten


def test_throughput_options_keep_the_prefix_content_options_change_it(chain_with_traffic, cold):
    chain = chain_with_traffic
    _, base = ingest(chain.url, "blocks", chain.start, chain.end_exclusive)
    _, tuned = ingest(
        chain.url, "blocks", chain.start, chain.end_exclusive, max_concurrent_requests=2
    )
    _, zstd = ingest(chain.url, "blocks", chain.start, chain.end_exclusive, row_group_size=3)
    assert tuned.status == "identical" and tuned.location == base.location
    assert zstd.status == "uploaded" and zstd.location != base.location
    # Same values, other encoding: the content digests agree even though the bytes do not.
    assert zstd.manifest["files"][0]["sha256"] != base.manifest["files"][0]["sha256"]
    content = [m.manifest["files"][0]["content_sha256"] for m in (base, zstd)]
    assert content[0] == content[1]


def test_a_partial_upload_without_success_is_overwritten(chain_with_traffic, cold):
    chain = chain_with_traffic
    _, first = ingest(chain.url, "logs", chain.start, chain.end_exclusive)
    prefix = first.location.removeprefix(cold.uri())
    # A crashed attempt: garbage in one file, no _SUCCESS yet.
    name = first.manifest["files"][0]["name"]
    cold.put_bytes(b"half a file", prefix + name)
    (cold.root / prefix / "_SUCCESS").unlink()
    _, second = ingest(chain.url, "logs", chain.start, chain.end_exclusive)
    assert second.status == "uploaded"
    assert (
        cold_layout.sha256_hex(cold.get_bytes(prefix + name))
        == first.manifest["files"][0]["sha256"]
    )
    assert cold.exists(prefix + "_SUCCESS")


def test_conflicting_content_at_the_prefix_fails_loudly(fresh_anvil, cold):
    traffic = devchain.generate_traffic(fresh_anvil.url, blocks=6, txs_per_block=3)
    start, end = traffic.first_block, traffic.last_block + 1
    ingest(fresh_anvil.url, "blocks", start, end)
    ingest(fresh_anvil.url, "transactions", start, end)
    before = {k: cold.get_bytes(k) for k in cold.list("")}

    devchain.reorg(fresh_anvil.url, 3)  # same heights, new hashes, the transactions dropped
    # Same number of blocks: only the content digest can tell.
    with pytest.raises(PermanentError, match=r"conflicting content at prefix .*values differ"):
        ingest(fresh_anvil.url, "blocks", start, end)
    with pytest.raises(PermanentError, match=r"conflicting content at prefix .*rows committed"):
        ingest(fresh_anvil.url, "transactions", start, end)
    assert {k: cold.get_bytes(k) for k in cold.list("")} == before  # nothing overwritten


def test_a_damaged_committed_prefix_is_a_conflict(chain_with_traffic, cold):
    chain = chain_with_traffic
    _, first = ingest(chain.url, "blocks", chain.start, chain.end_exclusive)
    prefix = first.location.removeprefix(cold.uri())
    cold.put_bytes(b"{not json", prefix + "manifest.json")
    with pytest.raises(PermanentError, match=r"manifest\.json is not valid JSON"):
        ingest(chain.url, "blocks", chain.start, chain.end_exclusive)


def test_same_values_in_another_encoding_count_as_the_committed_partition(chain_with_traffic, cold):
    """What Cryo writes is byte-identical run to run, but another Cryo/Polars build may encode
    the same rows differently: that must not be a conflict, and the committed bytes stay."""
    import pyarrow.parquet as pq

    chain = chain_with_traffic
    _, first = ingest(chain.url, "logs", chain.start, chain.end_exclusive)
    prefix = first.location.removeprefix(cold.uri())
    entry = first.manifest["files"][0]
    path = cold.root / prefix / entry["name"]
    pq.write_table(pq.read_table(path), path, compression="snappy", row_group_size=7)
    reencoded = {
        **first.manifest,
        "files": [{**entry, "sha256": cold_layout.file_sha256(path), "bytes": path.stat().st_size}],
        "bytes": path.stat().st_size,
        "producer": {"extractor": "cryo", "version": "0.0.0-other-build"},
    }
    cold.put_bytes(cold_layout.manifest_bytes(reencoded), prefix + "manifest.json")

    ctx, again = ingest(chain.url, "logs", chain.start, chain.end_exclusive)
    assert again.status == "equivalent"
    assert again.manifest == reencoded
    assert ctx.outputs[0]["publication"]["bytes"] == path.stat().st_size
    assert cold_layout.file_sha256(path) == reencoded["files"][0]["sha256"]  # left alone


# --- staging ----------------------------------------------------------------------------------


def test_staging_is_private_to_the_attempt_and_removed(
    chain_with_traffic, cold, tmp_path, monkeypatch
):
    seen = []
    real = cryo_ingest.cryo_freeze

    def spy(**kwargs):
        staging = kwargs["output_dir"].parent
        seen.append((staging.name, staging.stat().st_mode & 0o777))
        return real(**kwargs)

    monkeypatch.setattr(cryo_ingest, "cryo_freeze", spy)
    ctx = make_ctx(
        {"chain_id": CHAIN_ID, "dataset": "blocks", "rpc_url": chain_with_traffic.url},
        chain_with_traffic.start,
        chain_with_traffic.end_exclusive,
        task_id=41,
        attempt=3,
    )
    cryo_ingest.run(ctx)
    assert seen and all(re.match(r"task-41-attempt-3-", name) for name, _ in seen)
    assert {mode for _, mode in seen} == {0o700}
    assert list(staging_root(tmp_path).iterdir()) == []


def test_stale_staging_dirs_are_cleaned_at_start(chain_with_traffic, cold, tmp_path):
    root = staging_root(tmp_path)
    root.mkdir(parents=True)
    earlier_attempt = root / "task-5-attempt-1-abc"
    crashed_long_ago = root / "task-8-attempt-2-def"
    running_elsewhere = root / "task-9-attempt-1-ghi"
    not_ours = root / "something-else"
    for path in (earlier_attempt, crashed_long_ago, running_elsewhere, not_ours):
        (path / "cryo").mkdir(parents=True)
        (path / "cryo" / "x.parquet").write_bytes(b"leftover")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(crashed_long_ago, (two_days_ago, two_days_ago))

    ctx = make_ctx(
        {"chain_id": CHAIN_ID, "dataset": "blocks", "rpc_url": chain_with_traffic.url},
        chain_with_traffic.start,
        chain_with_traffic.end_exclusive,
        task_id=5,
        attempt=2,
    )
    cryo_ingest.run(ctx)
    assert sorted(p.name for p in root.iterdir()) == sorted([running_elsewhere.name, not_ours.name])


# --- caps and errors --------------------------------------------------------------------------


def test_byte_cap_is_permanent_and_uploads_nothing(chain_with_traffic, cold, tmp_path):
    chain = chain_with_traffic
    with pytest.raises(PermanentError, match=r"over max_bytes=1000; .*nothing was uploaded"):
        ingest(chain.url, "transactions", chain.start, chain.end_exclusive, max_bytes=1000)
    assert cold.list("") == []
    assert list(staging_root(tmp_path).iterdir()) == []


def test_file_cap_is_permanent_before_any_extraction(chain_with_traffic, cold, monkeypatch):
    chain = chain_with_traffic
    monkeypatch.setattr(cryo_ingest, "cryo_freeze", lambda **kw: pytest.fail("cryo ran"))
    with pytest.raises(PermanentError, match=r"would be \d+ files, over max_files=2"):
        ingest(chain.url, "blocks", chain.start, chain.end_exclusive, chunk_size=3, max_files=2)
    assert cold.list("") == []


def test_chunked_partition_has_one_file_per_chunk(chain_with_traffic, cold):
    chain = chain_with_traffic
    _, result = ingest(chain.url, "blocks", chain.start, chain.end_exclusive, chunk_size=8)
    names = [f["name"] for f in result.manifest["files"]]
    chunks = cold_layout.chunk_ranges(chain.start, chain.end_exclusive, 8)
    assert names == [f"anvil__blocks__{s:08}_to_{e - 1:08}.parquet" for s, e in chunks]
    assert [f["rows"] for f in result.manifest["files"]] == [e - s for s, e in chunks]


@pytest.mark.parametrize(
    "changes, scope, message",
    [
        ({"chain_id": None}, (0, 5), "config.chain_id: required"),
        ({"dataset": "state_diffs"}, (0, 5), "config.dataset: must be one of"),
        ({"colour": "blue"}, (0, 5), r"config\.colour: unknown field"),
        ({"rpc_pool": "main"}, (0, 5), "exactly one of rpc_pool"),
        ({"max_bytes": 0}, (0, 5), "config.max_bytes: must be >= 1"),
        ({"contract": "0x11"}, (0, 5), "logs dataset only"),
        ({"columns": ["value"]}, (0, 5), r"config\.columns: unknown field"),
        ({"topic0": []}, (0, 5), "config.topic0: must not be empty"),
        ({}, (None, None), "needs a block range scope"),
        ({}, (5, 5), r"invalid block range \[5, 5\)"),
    ],
)
def test_bad_config_or_scope_is_permanent(anvil, cold, changes, scope, message):
    config = {"chain_id": CHAIN_ID, "dataset": "blocks", "rpc_url": anvil.url, **changes}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(PermanentError, match=message):
        cryo_ingest.run(make_ctx(config, *scope))
    assert cold.list("") == []


def test_content_config_ignores_the_rpc_source_and_throughput_knobs():
    base = {"chain_id": CHAIN_ID, "dataset": "logs", "rpc_pool": "main"}
    same = {**base, "rpc_pool": None, "rpc_url": "http://127.0.0.1:1", "max_retries": 9}
    same = {k: v for k, v in same.items() if v is not None}
    assert cryo_ingest.content_config(same) == cryo_ingest.content_config(base)
    for content_change in ({"dataset": "blocks"}, {"topic0": "0xab"}, {"chunk_size": 7}):
        assert cryo_ingest.content_config({**base, **content_change}) != (
            cryo_ingest.content_config(base)
        )


def test_a_node_on_another_chain_is_a_config_error(chain_with_traffic, cold):
    ctx = make_ctx(
        {"chain_id": 1, "dataset": "blocks", "rpc_url": chain_with_traffic.url},
        chain_with_traffic.start,
        chain_with_traffic.end_exclusive,
    )
    with pytest.raises(PermanentError, match=r"serves chain 31337, config\.chain_id is 1"):
        cryo_ingest.run(ctx)


def test_options_cryo_rejects_are_a_permanent_error(chain_with_traffic, cold, monkeypatch):
    # Columns are ours to choose, so this happens when a Cryo release renames one of them.
    chain = chain_with_traffic
    monkeypatch.setattr(chain_schema, "cryo_columns", lambda dataset: ["no_such_column"])
    with pytest.raises(PermanentError, match="cryo rejected the options"):
        ingest(chain.url, "blocks", chain.start, chain.end_exclusive)
    assert cold.list("") == []


def test_a_range_past_the_head_is_retried_not_failed(anvil, cold):
    head = _head(anvil.url)
    with pytest.raises(cryo_ingest.RangeNotReady, match=f"no endpoint has block {head + 10}"):
        ingest(anvil.url, "blocks", head - 2, head + 11)
    assert cold.list("") == []


def _head(url: str) -> int:
    with RpcPool("check", [url]) as pool:
        return int(pool.call("eth_blockNumber"), 16)


def test_rpc_pool_fails_over_to_an_endpoint_that_answers(chain_with_traffic, cold, monkeypatch):
    dead = f"http://127.0.0.1:{devchain.free_port()}"
    monkeypatch.setenv("TRACE_RPC_POOL_COLD_TEST", f"{dead},{chain_with_traffic.url}")
    ctx = make_ctx(
        {"chain_id": CHAIN_ID, "dataset": "logs", "rpc_pool": "cold-test"},
        chain_with_traffic.start,
        chain_with_traffic.end_exclusive,
    )
    result = cryo_ingest.run(ctx)
    assert result.status == "uploaded"
    counts = node_counts(chain_with_traffic.url, chain_with_traffic.start, ctx.scope.range_end)
    assert result.manifest["row_count"] == counts["logs"]


def test_an_unconfigured_rpc_pool_is_a_config_error(cold, monkeypatch):
    monkeypatch.delenv("TRACE_RPC_POOL_NOWHERE", raising=False)
    ctx = make_ctx({"chain_id": CHAIN_ID, "dataset": "logs", "rpc_pool": "nowhere"}, 0, 5)
    with pytest.raises(PermanentError, match="TRACE_RPC_POOL_NOWHERE"):
        cryo_ingest.run(ctx)


def test_all_endpoints_down_is_retryable(cold):
    dead = f"http://127.0.0.1:{devchain.free_port()}"
    with pytest.raises(cryo_ingest.CryoFailed, match=r"127\.0\.0\.1"):
        ingest(dead, "blocks", 0, 5)


def test_a_lost_lease_stops_before_anything_is_uploaded(
    chain_with_traffic, cold, tmp_path, monkeypatch
):
    real = cryo_ingest.cryo_freeze
    holder = {}

    def freeze_then_lose_lease(**kwargs):
        summary = real(**kwargs)
        if not kwargs.get("dry"):
            holder["ctx"].stop_event.set()  # the heartbeat found the attempt superseded
        return summary

    monkeypatch.setattr(cryo_ingest, "cryo_freeze", freeze_then_lose_lease)
    ctx = make_ctx(
        {"chain_id": CHAIN_ID, "dataset": "blocks", "rpc_url": chain_with_traffic.url},
        chain_with_traffic.start,
        chain_with_traffic.end_exclusive,
    )
    holder["ctx"] = ctx
    with pytest.raises(LeaseLost):
        cryo_ingest.run(ctx)
    assert cold.list("") == []
    assert ctx.outputs is None
    assert list(staging_root(tmp_path).iterdir()) == []


# --- S3 -----------------------------------------------------------------------------------------


def test_publishes_to_s3_over_http(chain_with_traffic, tmp_path, monkeypatch):
    chain = chain_with_traffic
    monkeypatch.setenv("TRACE_STAGING_DIR", str(tmp_path / "staging"))
    with moto_s3_server() as endpoint:
        bucket = s3_bucket_create(endpoint, monkeypatch)
        monkeypatch.setenv("TRACE_S3_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("TRACE_OBJECT_STORE_URL", f"s3://{bucket}/trace")
        store = object_store_from_env()
        ctx, result = ingest(chain.url, "logs", chain.start, chain.end_exclusive)
        prefix = (
            f"{CHAIN_ID}/logs/{result.manifest['config_hash'][:16]}/"
            f"{chain.start:08}_{chain.end_exclusive - 1:08}/"
        )
        assert result.location == f"s3://{bucket}/trace/{prefix}"
        assert ctx.outputs[0]["publication"]["location"] == result.location
        assert store.list(prefix) == sorted(
            prefix + n for n in [result.manifest["files"][0]["name"], "manifest.json", "_SUCCESS"]
        )
        entry = result.manifest["files"][0]
        assert cold_layout.sha256_hex(store.get_bytes(prefix + entry["name"])) == entry["sha256"]
        assert json.loads(store.get_bytes(prefix + "manifest.json")) == result.manifest
        _, again = ingest(chain.url, "logs", chain.start, chain.end_exclusive)
        assert again.status == "identical" and again.location == result.location


# --- the layout itself --------------------------------------------------------------------------


def test_layout_names_keep_chain_dataset_and_inclusive_range_visible():
    identity = cold_layout.config_identity(
        chain_id=1, chain="ethereum", dataset="logs", options={"compression": ["zstd", "3"]}
    )
    digest = cold_layout.config_hash(identity)
    partition = cold_layout.ColdPartition(1, "ethereum", "logs", digest, 1000, 2000)
    assert partition.prefix == f"1/logs/{digest[:16]}/00001000_00001999/"
    assert partition.file_names() == ["ethereum__logs__00001000_to_00001999.parquet"]
    assert partition.file_names(400)[-1] == "ethereum__logs__00001800_to_00001999.parquet"
    # Canonical JSON: key order does not matter, any value does.
    assert cold_layout.config_hash({"b": 1, "a": [2, 3]}) == cold_layout.config_hash(
        {"a": [2, 3], "b": 1}
    )
    other = cold_layout.config_identity(
        chain_id=1, chain="ethereum", dataset="logs", options={"compression": ["zstd", "4"]}
    )
    assert cold_layout.config_hash(other) != digest
    with pytest.raises(ValueError):
        cold_layout.ColdPartition(1, "ethereum", "logs", digest, 5, 5)


def test_manifest_comparison_verdicts():
    base = {
        "format": cold_layout.MANIFEST_FORMAT,
        "chain_id": 1,
        "dataset": "blocks",
        "range_start": 0,
        "range_end": 10,
        "config_hash": "c" * 64,
        "schema_hash": "s" * 64,
        "files": [{"name": "f", "rows": 10, "sha256": "a", "content_sha256": "x"}],
        "producer": {"version": "1"},
    }
    compare = cold_layout.manifests_compare
    assert compare(base, {**base, "producer": {"version": "2"}}).verdict == "identical"
    reencoded = {**base, "files": [{**base["files"][0], "sha256": "b"}]}
    assert compare(base, reencoded).verdict == "equivalent"
    changed = {**base, "files": [{**base["files"][0], "sha256": "b", "content_sha256": "y"}]}
    assert compare(base, changed) == cold_layout.Comparison(
        "conflict", "f: values differ (same row count)"
    )
    assert compare(base, {**base, "schema_hash": "t" * 64}).verdict == "conflict"
