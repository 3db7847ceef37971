"""integrity_check against a real anvil chain, real compacted cold partitions (followed into the
hot tables, then parquet_compact) and a real object store: a clean range passes; a changed
row, a truncated file, a deleted file, two swapped ranges are each found with their range and
kind; sampling; a reorg of the unfinalized hot range is not corruption; a repair rebuilds the
range under a new revision, which then passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.chain.compaction_helpers import CHAIN, compact, compaction_config, live
from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from trace_chain import devchain
from trace_chain.adapter import ChainAdapter
from trace_chain.cold_segments import segments_live
from trace_chain.integrity import integrity_check
from trace_chain.integrity_repair import ranges_repair
from trace_chain.rpc import RpcPool

FINALITY = 3


@dataclass(frozen=True)
class Built:
    engine: Any
    store: Any
    adapter: ChainAdapter


@pytest.fixture(scope="module")
def built(_data_db_migrated, tmp_path_factory):
    """One chain compacted for the module's read-only tests (they run first: the tests with
    `hot_engine` empty the data DB)."""
    import sqlalchemy as sa

    from trace_chain.db import data_engine
    from trace_chain.hot_schema import metadata
    from trace_chain.object_store import object_store_from_env

    root = tmp_path_factory.mktemp("integrity")
    with devchain.Anvil() as node, pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRACE_OBJECT_STORE_URL", (root / "objects").as_uri())
        patch.setenv("TRACE_STAGING_DIR", str(root / "staging"))
        engine = data_engine()
        with engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)}"))
        devchain.generate_traffic(node.url, blocks=16, txs_per_block=2)
        catch_up(make_follower(node.url, engine, Recorder(), batch_size=50))
        compact(compaction_config(finality_depth_blocks=FINALITY))
        with RpcPool("check", [node.url], timeout=10.0, max_retries=0) as pool:
            adapter = ChainAdapter(pool)
            yield Built(engine, object_store_from_env(), adapter)
            adapter.close()


@pytest.fixture
def shared(built):
    """The module's chain, its files put back as they were after each test."""
    files = {p: p.read_bytes() for p in built.store.root.rglob("*") if p.is_file()}
    yield built.engine, built.store, built.adapter
    for path in built.store.root.rglob("*"):
        if path.is_file() and path not in files:
            path.unlink()
    for path, data in files.items():
        path.write_bytes(data)


@pytest.fixture
def compacted(fresh_anvil, hot_engine, cold):
    devchain.generate_traffic(fresh_anvil.url, blocks=16, txs_per_block=2)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), batch_size=50)
    catch_up(follower)
    compact(compaction_config(finality_depth_blocks=FINALITY))
    assert len(live(hot_engine)) >= 3
    with RpcPool("check", [fresh_anvil.url], timeout=10.0, max_retries=0) as pool:
        adapter = ChainAdapter(pool)
        yield fresh_anvil.url, follower, adapter
        adapter.close()


def check(hot_engine, cold, adapter, **kwargs):
    return integrity_check(
        engine=hot_engine,
        store=cold,
        adapter=adapter,
        chain_id=CHAIN,
        range_start=kwargs.pop("range_start", None),
        range_end=kwargs.pop("range_end", None),
        finality_depth_blocks=FINALITY,
        **kwargs,
    )


def path_of(hot_engine, cold, dataset, start):
    with hot_engine.connect() as conn:
        segment = next(
            s
            for s in segments_live(conn, chain_id=CHAIN, dataset=dataset)
            if s.range_start == start
        )
    return cold.root / (segment.location.removeprefix(cold.uri()) + segment.files[0]["name"])


def found(report):
    return sorted({(m.kind, m.dataset, m.range_start, m.range_end) for m in report.mismatches})


def test_a_clean_range_passes(shared):
    hot_engine, cold, adapter = shared
    report = check(hot_engine, cold, adapter)
    assert report.clean, report.mismatches
    segments = live(hot_engine)
    assert (report.range_start, report.range_end) == (segments[0][0], segments[-1][1])
    assert report.blocks_checked == report.range_end - report.range_start
    assert report.partitions_checked == 4 * len(segments)  # blocks, transactions, logs, traces


def _change_a_block_hash(hot_engine, cold):
    path = path_of(hot_engine, cold, "blocks", 5)
    table = pq.read_table(path)
    hashes = table.column("block_hash").to_pylist()
    hashes[2] = "0x" + "ab" * 32
    index = table.schema.get_field_index("block_hash")
    table = table.set_column(index, table.schema.field(index), [hashes])
    pq.write_table(table, path)


def _drop_a_log(hot_engine, cold):
    path = path_of(hot_engine, cold, "logs", 5)
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)


def _truncate(hot_engine, cold):
    path = path_of(hot_engine, cold, "transactions", 10)
    path.write_bytes(path.read_bytes()[:100])


def _delete(hot_engine, cold):
    path_of(hot_engine, cold, "blocks", 10).unlink()


def _swap(hot_engine, cold):
    first, second = path_of(hot_engine, cold, "blocks", 0), path_of(hot_engine, cold, "blocks", 5)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


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
        (_drop_a_log, [("checksum", "logs", 5, 10), ("log_count", "logs", 5, 10)]),
        (_truncate, [("checksum", "transactions", 10, 15)]),
        (_delete, [("missing", "blocks", 10, 15)]),
        (
            _swap,
            [
                ("checksum", "blocks", 0, 5),
                ("checksum", "blocks", 5, 10),
                ("coverage", "blocks", 0, 5),
                ("coverage", "blocks", 5, 10),
            ],  # each block is where its number says, so hashes and links still agree
        ),
    ],
    ids=["change-a-row", "drop-a-log", "truncate", "delete", "swap"],
)
def test_tampering_is_found_with_its_range_and_kind(shared, tamper, expected):
    hot_engine, cold, adapter = shared
    tamper(hot_engine, cold)
    report = check(hot_engine, cold, adapter)
    assert found(report) == expected


def test_a_dropped_transaction_shows_as_its_block_s_tx_count(shared):
    hot_engine, cold, adapter = shared
    path = path_of(hot_engine, cold, "transactions", 10)
    table = pq.read_table(path)
    dropped = table.column("block_number")[0].as_py()
    pq.write_table(table.slice(1), path)
    report = check(hot_engine, cold, adapter)
    assert found(report) == [
        ("checksum", "transactions", 10, 15),
        ("tx_count", "transactions", 10, 15),
    ]
    assert [m.block for m in report.mismatches if m.kind == "tx_count"] == [dropped]


def test_sampling_checks_a_seeded_subset_and_always_the_checksums(shared):
    hot_engine, cold, adapter = shared
    full = check(hot_engine, cold, adapter)
    sampled = check(hot_engine, cold, adapter, sample=0.25, seed=3)
    again = check(hot_engine, cold, adapter, sample=0.25, seed=3)
    total = full.range_end - full.range_start
    assert sampled.blocks_checked == round(total * 0.25) < total
    assert sampled.clean and again.blocks_checked == sampled.blocks_checked
    _truncate(hot_engine, cold)
    assert ("checksum", "transactions", 10, 15) in found(
        check(hot_engine, cold, adapter, sample=0.25, seed=3)
    )


def test_the_first_hot_block_above_cold_must_link_to_cold_s_last(compacted, hot_engine, cold):
    from trace_chain.hot_schema import hot_blocks

    url, _, adapter = compacted
    end = live(hot_engine)[-1][1]
    devchain.mine(url, FINALITY)  # hot block `end` is final now (the check skips it before)
    with hot_engine.begin() as conn:
        conn.execute(
            hot_blocks.update()
            .where(hot_blocks.c.block_number == end)
            .values(parent_hash="0x" + "cd" * 32)
        )
    report = check(hot_engine, cold, adapter)
    assert found(report) == [("parent_link", "blocks", end - 5, end)]
    assert [m.block for m in report.mismatches] == [end - 1]


def test_a_reorg_of_the_unfinalized_hot_range_is_not_corruption(compacted, hot_engine, cold):
    url, follower, adapter = compacted
    before = check(hot_engine, cold, adapter)
    devchain.reorg(url, FINALITY - 1)  # only blocks the node has not finalized
    catch_up(follower)
    after = check(hot_engine, cold, adapter)
    assert before.clean and after.clean
    assert (after.range_start, after.range_end) == (before.range_start, before.range_end)


def test_a_repair_rebuilds_the_range_under_a_new_revision_and_then_passes(
    compacted, hot_engine, cold, tmp_path
):
    _, _, adapter = compacted
    _change_a_block_hash(hot_engine, cold)
    damaged_at = {s: loc for s, loc in _locations(hot_engine, "blocks").items()}
    report = check(hot_engine, cold, adapter)
    committed = Recorder()
    staging = tmp_path / "repair"
    staging.mkdir()
    done = ranges_repair(
        engine=hot_engine,
        store=cold,
        adapter=adapter,
        chain_id=CHAIN,
        chain="anvil",
        affected=report.affected(),
        row_group_rows=compaction_config()["row_group_size"],
        staging=staging,
        commit=lambda item: committed([item]),
    )
    assert [(c.dataset, c.partition.range_start, c.partition.range_end) for c in done] == [
        ("blocks", 5, 10)
    ]
    now = _locations(hot_engine, "blocks")
    assert now[5] != damaged_at[5]  # a new revision prefix ...
    assert now[5].startswith(damaged_at[5].rsplit("/", 2)[0] + "/")  # ... of the same range
    assert cold.exists(damaged_at[5].removeprefix(cold.uri()) + "_SUCCESS")  # old one kept
    assert {k: v for k, v in now.items() if k != 5} == {
        k: v for k, v in damaged_at.items() if k != 5
    }
    assert check(hot_engine, cold, adapter).clean


def _locations(hot_engine, dataset):
    with hot_engine.connect() as conn:
        return {
            s.range_start: s.location for s in segments_live(conn, chain_id=CHAIN, dataset=dataset)
        }
