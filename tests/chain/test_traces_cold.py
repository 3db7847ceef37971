"""`traces` across the compaction line on a real anvil: after parquet_compact moves finalized
ranges to cold, every trace row — cold files below the line, hot rows above it — equals the
node's trace_block answer, before and after a reorg of the hot tip; and the federated query's
totals equal hot-only plus cold-only, range by range."""

# ruff: noqa: S608 - the tests' own SQL over their own fixtures

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pyarrow.parquet as pq

from tests.chain.compaction_helpers import (
    compact,
    compaction_config,
    expected_line,
    federated_rows,
    hot_low,
    live_files,
)
from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from tests.chain.test_follower_traces import node_traces, stored_traces
from trace_chain import devchain
from trace_chain.devchain_calls import caller_calldata, generate_call_traffic

BUCKET = 4
TOTALS = f"""
SELECT block_number // {BUCKET} AS r, count(*) AS frames, sum(value) AS value,
       count(error) AS failed, count(created_address) AS created
FROM traces GROUP BY 1 ORDER BY 1
"""


def _bucketed(rows) -> dict:
    totals: dict = defaultdict(
        lambda: {"frames": 0, "value": Decimal(0), "failed": 0, "created": 0}
    )
    for row in rows:
        into = totals[row["block_number"] // BUCKET]
        into["frames"] += 1
        into["value"] += Decimal(row["value"])
        into["failed"] += row["error"] is not None
        into["created"] += row["created_address"] is not None
    return dict(totals)


def _add(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for r, row in part.items():
            into = out.setdefault(r, {"frames": 0, "value": Decimal(0), "failed": 0, "created": 0})
            for key, value in row.items():
                into[key] += value
    return out


def cold_traces(engine) -> list[dict]:
    """The live compacted traces files' rows below the line, read with plain pyarrow."""
    line = hot_low(engine)
    rows = [
        {**row, "value": int(row["value"])}
        for path in live_files(engine)["traces"]
        for row in pq.read_table(path).to_pylist()
        if line is None or row["block_number"] < line
    ]
    return sorted(
        rows, key=lambda r: (r["block_number"], r["transaction_index"], r["trace_address"])
    )


def check(engine, url: str, tip: int, tmp_path) -> None:
    node = node_traces(url, 0, tip + 1)
    cold, hot = cold_traces(engine), stored_traces(engine)
    assert cold and hot  # the line splits the traces
    assert cold + hot == node  # row by row, every column
    federated = {row.pop("r"): row for row in federated_rows(tmp_path, TOTALS)}
    assert federated == _add(_bucketed(cold), _bucketed(hot)) == _bucketed(node)


def test_traces_span_cold_and_hot_as_the_node_has_them_before_and_after_a_reorg(
    fresh_anvil, hot_engine, cold, tmp_path
):
    url = fresh_anvil.url
    calls = generate_call_traffic(url, blocks=12)
    follower = make_follower(url, hot_engine, Recorder(), traces=True, batch_size=50)
    catch_up(follower)
    config = compaction_config()
    compact(config)
    assert hot_low(hot_engine) == expected_line(follower.tip, config) > calls.block_numbers[0]
    check(hot_engine, url, follower.tip, tmp_path)

    # A reorg of the hot tip (shallower than the finality depth): its new block's traces.
    spawn = {
        "from": devchain.dev_accounts(url)[8],
        "to": calls.caller,
        "data": caller_calldata("nest"),
        "gas": hex(devchain.CALL_GAS),
    }
    devchain.reorg(url, 2, [(spawn, 0)])
    catch_up(follower)
    follower.step()  # the tip check runs when there is nothing new to fetch
    catch_up(follower)
    check(hot_engine, url, follower.tip, tmp_path)
    compact(config)  # nothing new is final: the line stays, the answers too
    check(hot_engine, url, follower.tip, tmp_path)


def test_ranges_compacted_before_traces_existed_are_compacted_again_and_trimmed(
    fresh_anvil, hot_engine, cold, tmp_path
):
    import sqlalchemy as sa

    from trace_chain.cold_segments import cold_segments

    url = fresh_anvil.url
    generate_call_traffic(url, blocks=10)
    follower = make_follower(url, hot_engine, Recorder(), traces=True, batch_size=50)
    catch_up(follower)
    config = compaction_config(hot_window_blocks=8)  # compacted ranges stay hot a while
    compact(config)
    line = hot_low(hot_engine)
    # As a deployment compacted before the upgrade: no traces segments at all.
    with hot_engine.begin() as conn:
        conn.execute(cold_segments.delete().where(cold_segments.c.dataset == "traces"))
    devchain.mine(url, 10)
    catch_up(follower)
    recorder = Recorder()
    compact(config, recorder)
    assert hot_low(hot_engine) > line  # the trim went on past the ranges lacking traces
    assert not recorder.of_type("invalidation")  # cold's blocks were right: nothing reorged
    with hot_engine.connect() as conn:
        covered = conn.execute(
            sa.select(sa.func.min(cold_segments.c.range_start)).where(
                cold_segments.c.dataset == "traces", cold_segments.c.state == "live"
            )
        ).scalar()
    assert covered == line  # traces compacted again from the old line
    node = node_traces(url, line, follower.tip + 1)
    assert cold_traces(hot_engine) + stored_traces(hot_engine) == node
