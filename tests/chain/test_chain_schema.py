"""One chain schema, really shared: the same blocks followed into the hot tables and backfilled
by Cryo into Parquet give equal rows, column by column, with the same names and types."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from tests.chain.test_cryo_ingest import ingest
from trace_chain import chain_schema, devchain
from trace_chain.devchain_calls import generate_call_traffic
from trace_chain.hot_schema import hot_blocks, hot_logs, hot_traces, hot_transactions
from trace_operators.cryo_ingest import DATASETS as CRYO_DATASETS

HOT = {
    "blocks": hot_blocks,
    "transactions": hot_transactions,
    "logs": hot_logs,
    "traces": hot_traces,
}


def test_every_dataset_has_a_hot_table_keyed_by_chain_and_block_first():
    # Reorg deletes and range scans filter on (chain_id, block_number): the key must lead so.
    assert set(HOT) == set(chain_schema.DATASETS)
    for dataset, table in HOT.items():
        key = [c.name for c in table.primary_key.columns]
        assert key == ["chain_id", *chain_schema.KEYS[dataset]], dataset
        assert [c.name for c in table.columns] == chain_schema.column_names(dataset)


@pytest.mark.parametrize("dataset", CRYO_DATASETS)
def test_hot_rows_and_cryo_rows_of_the_same_blocks_are_equal(
    fresh_anvil,
    hot_engine,
    cold,
    dataset,
):
    # Internal calls (relays, factory creates two frames deep, reverting inner calls), then
    # transfers and logs: every dataset has rows of every shape.
    calls = generate_call_traffic(fresh_anvil.url, blocks=3)
    traffic = devchain.generate_traffic(
        fresh_anvil.url, blocks=4, txs_per_block=4, emitter=calls.emitter
    )
    start, end = calls.block_numbers[0], traffic.last_block + 1
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), traces=True)
    catch_up(follower)
    _, result = ingest(fresh_anvil.url, dataset, start, end)

    prefix = result.location.removeprefix(cold.uri())
    files = [cold.root / (prefix + f["name"]) for f in result.manifest["files"]]
    tables = [pq.read_table(path) for path in files]
    assert all(t.schema.equals(chain_schema.arrow_schema(dataset)) for t in tables)
    cold_rows = [row for table in tables for row in table.to_pylist()]

    table = HOT[dataset]
    key = [table.c[name] for name in chain_schema.KEYS[dataset]]
    in_range = (table.c.block_number >= start) & (table.c.block_number < end)
    with hot_engine.connect() as conn:
        hot_rows = [
            dict(r._mapping) for r in conn.execute(sa.select(table).where(in_range).order_by(*key))
        ]
    assert [list(r) for r in hot_rows[:1]] == [chain_schema.column_names(dataset)]
    assert len(cold_rows) == len(hot_rows) > 0
    assert cold_rows == hot_rows
