"""The unified relations over real hot tables and real cold Parquet of one anvil chain: every
block is read exactly once — cold below the compaction line, hot from it on — whether the line
is at the hot floor, after a compaction moved it, or while cold and hot overlap."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from tests.chain.test_cryo_ingest import ingest
from trace_chain import chain_schema, devchain
from trace_chain.db import query_reader_dsn
from trace_chain.devchain_calls import generate_call_traffic
from trace_chain.hot_schema import hot_blocks, hot_logs, hot_traces, hot_transactions
from trace_chain.query.catalog import Catalog, ColdFile
from trace_chain.query.engine import Limits, query_execute
from trace_operators.cryo_ingest import DATASETS as BACKFILL_DATASETS

CHAIN = devchain.ANVIL_CHAIN_ID
TOTALS = """
SELECT
  (SELECT count(*) FROM blocks) AS blocks,
  (SELECT count(*) FROM transactions) AS transactions,
  (SELECT count(*) FROM logs) AS logs,
  (SELECT count(*) FROM traces) AS traces,
  (SELECT sum(value) FROM traces WHERE trace_address <> '') AS internal_value,
  (SELECT sum(value) FROM transactions) AS value,
  (SELECT sum(gas_used) FROM blocks) AS gas,
  (SELECT count(DISTINCT block_number) FROM blocks) AS distinct_blocks
"""


@pytest.fixture
def chain(fresh_anvil, hot_engine, cold):
    # Internal calls before and after the transfers and logs, so both sides of any line
    # below have traces of contracts calling contracts.
    calls = generate_call_traffic(fresh_anvil.url, blocks=2)
    traffic = devchain.generate_traffic(
        fresh_anvil.url, blocks=12, txs_per_block=3, emitter=calls.emitter
    )
    generate_call_traffic(fresh_anvil.url, blocks=2, emitter=calls.emitter, caller=calls.caller)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), traces=True)
    catch_up(follower)
    return fresh_anvil.url, traffic, follower.tip


def cold_files(cold, url: str, start: int, end: int) -> list[ColdFile]:
    files = []
    for dataset in BACKFILL_DATASETS:
        _, result = ingest(url, dataset, start, end)
        prefix = result.location.removeprefix(cold.uri())
        for entry in result.manifest["files"]:
            files.append(
                ColdFile(
                    dataset=dataset,
                    chain_id=CHAIN,
                    path=str(cold.root / (prefix + entry["name"])),
                    range_start=start,
                    range_end=end,
                    schema_version=result.manifest["schema_version"],
                )
            )
    return files


def totals(files: list[ColdFile], tmp_path: Path, *, hot: bool = True) -> dict:
    catalog = Catalog(
        datasets=frozenset(chain_schema.DATASETS),
        hot_chain_ids=frozenset({CHAIN}) if hot else frozenset(),
        cold=tuple(files),
        hot_dsn=query_reader_dsn(),
    )
    result = query_execute(TOTALS, catalog=catalog, limits=Limits(), temp_dir=tmp_path / "q")
    return result.table.to_pylist()[0]


def node_totals(engine, tip: int) -> dict:
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.sum(hot_transactions.c.value))).scalar()
        return {
            "blocks": tip + 1,
            "transactions": conn.execute(
                sa.select(sa.func.count()).select_from(hot_transactions)
            ).scalar(),
            "logs": conn.execute(sa.select(sa.func.count()).select_from(hot_logs)).scalar(),
            "traces": conn.execute(sa.select(sa.func.count()).select_from(hot_traces)).scalar(),
            "internal_value": conn.execute(
                sa.select(sa.func.sum(hot_traces.c.value)).where(hot_traces.c.trace_address != "")
            ).scalar(),
            "value": Decimal(value),
            "gas": conn.execute(sa.select(sa.func.sum(hot_blocks.c.gas_used))).scalar(),
            "distinct_blocks": tip + 1,
        }


def compact(engine, below: int) -> None:
    """What compaction does after its cold partitions are committed: delete the hot rows."""
    with engine.begin() as conn:
        for table in (hot_traces, hot_logs, hot_transactions, hot_blocks):
            conn.execute(table.delete().where(table.c.block_number < below))


def test_cold_and_hot_overlapping_are_read_once(chain, hot_engine, cold, tmp_path):
    url, traffic, tip = chain
    expected = node_totals(hot_engine, tip)
    files = cold_files(cold, url, 0, traffic.first_block + 6)  # cold overlaps the hot rows
    assert totals(files, tmp_path) == expected  # the line is the hot floor (0): hot answers


def test_totals_are_equal_before_and_after_compaction_moves_the_line(
    chain, hot_engine, cold, tmp_path
):
    url, traffic, tip = chain
    expected = node_totals(hot_engine, tip)
    line = traffic.first_block + 6
    files = cold_files(cold, url, 0, line)
    assert totals(files, tmp_path) == expected
    compact(hot_engine, line)
    assert totals(files, tmp_path) == expected  # now cold [0, line) + hot [line, tip]
    cold_only = totals(files, tmp_path, hot=False)
    assert cold_only["blocks"] == line
    assert (
        cold_only["transactions"] + _hot_count(hot_engine, hot_transactions)
        == (expected["transactions"])
    )
    assert cold_only["traces"] > 0 and _hot_count(hot_engine, hot_traces) > 0
    assert cold_only["traces"] + _hot_count(hot_engine, hot_traces) == expected["traces"]


def test_a_gap_in_history_shows_as_missing_blocks_not_as_double_rows(
    chain, hot_engine, cold, tmp_path
):
    url, traffic, tip = chain
    line = traffic.first_block + 6
    files = cold_files(cold, url, 2, line)  # blocks 0 and 1 were never backfilled
    compact(hot_engine, line)
    got = totals(files, tmp_path)
    assert got["blocks"] == got["distinct_blocks"] == tip + 1 - 2


def _hot_count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
