"""The follower and compaction together on a real anvil chain: a follower restarting below the
hot window resumes from cold's high-water mark instead of being refused; a reorg deeper than
the finality depth and the hot window reaches into cold, the follower rewinds to the first
cold segment that disagrees with the node, and compaction rebuilds those segments."""

from __future__ import annotations

import pytest

from tests.chain.compaction_helpers import (
    CHAIN,
    assert_totals,
    compact,
    compaction_config,
    federated,
    hot_low,
    live,
    node_totals,
)
from tests.chain.test_block_follower import Recorder, catch_up, make_follower, node_blocks
from trace_chain import devchain
from trace_chain.cold_segments import segments_live
from trace_operators.context import PermanentError


@pytest.fixture
def compacted(fresh_anvil, hot_engine, cold):
    devchain.generate_traffic(fresh_anvil.url, blocks=18, txs_per_block=2)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), batch_size=50)
    catch_up(follower)
    compact(compaction_config())
    assert hot_low(hot_engine) > 10
    return fresh_anvil.url, follower


def test_a_follower_starting_below_the_hot_rows_resumes_from_cold(compacted, hot_engine, tmp_path):
    url, writer = compacted
    line = hot_low(hot_engine)
    recorder = Recorder()
    # Another job of the chain, from block 0: its blocks below the line are in cold now.
    newcomer = make_follower(url, hot_engine, recorder, job="late", resume=False)
    newcomer.standby_step()
    announced = recorder.of_type("output")
    assert announced[0]["range_start"] == 0 and announced[-1]["range_end"] == writer.tip + 1
    # Without cold below the line it is refused, as before compaction existed.
    with hot_engine.begin() as conn:
        from trace_chain.cold_segments import cold_segments

        conn.execute(cold_segments.delete())
    refused = make_follower(url, hot_engine, Recorder(), job="later", resume=False)
    with pytest.raises(PermanentError, match=f"hot rows start at block {line}"):
        refused.standby_step()


def test_a_writer_restarting_with_everything_compacted_continues_from_cold(
    fresh_anvil, hot_engine, cold, tmp_path
):
    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=12, txs_per_block=2)
    first = make_follower(url, hot_engine, Recorder(), batch_size=50)
    catch_up(first)
    devchain.mine(url, (5 - (first.tip + 1) % 5) % 5)  # end on a partition boundary
    catch_up(first)
    everything = compaction_config(finality_depth_blocks=0, hot_window_blocks=0)
    compact(everything)
    hwm = live(hot_engine)[-1][1]
    assert hot_low(hot_engine) is None and hwm == first.tip + 1  # hot is empty
    devchain.generate_traffic(url, blocks=3, txs_per_block=2)
    restarted = make_follower(url, hot_engine, Recorder(), batch_size=50)
    assert restarted.next_block == hwm  # not block 0
    catch_up(restarted)
    assert hot_low(hot_engine) == hwm  # history was not fetched into the hot tables again
    assert_totals(hot_engine, url, restarted.tip, tmp_path)


def test_a_deep_reorg_rebuilds_the_cold_partitions_it_reaches(
    fresh_anvil, hot_engine, cold, tmp_path
):
    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=40, txs_per_block=2)
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, batch_size=50, window_blocks=4)
    catch_up(follower)
    config = compaction_config()
    compact(config)
    before = {s.range_start: s.last_block_hash for s in _segments(hot_engine)}
    tip = follower.tip
    depth = 30  # deeper than finality (3) + hot window (4): most of it is cold
    devchain.reorg(url, depth)
    follower.step()
    catch_up(follower)
    first_bad = tip - depth + 1
    # The follower rewound to the first cold segment that disagrees with the node.
    rewound = (first_bad // 5) * 5
    assert hot_low(hot_engine) == rewound
    # The stale segments above the new line are not read: hot answers from the line on.
    assert_totals(hot_engine, url, follower.tip, tmp_path)
    compaction_events = Recorder()
    outcome = compact(config, compaction_events)
    assert outcome.rebuilt and outcome.rebuilt[0][0] == rewound
    after = {s.range_start: s.last_block_hash for s in _segments(hot_engine)}
    assert {s: h for s, h in after.items() if s < rewound} == {
        s: h for s, h in before.items() if s < rewound
    }
    node = {b["number"]: b["hash"] for b in node_blocks(url, 0, follower.tip + 1).blocks}
    assert all(node[s + 4] == h for s, h in after.items())  # every live segment is canonical
    invalidated = compaction_events.of_type("invalidation")
    assert [(e["range_start"], e["range_end"]) for e in invalidated] == outcome.rebuilt
    assert_totals(hot_engine, url, follower.tip, tmp_path)


def test_compacted_partitions_answer_before_a_stale_backfill(
    fresh_anvil, hot_engine, cold, tmp_path
):
    """A Cryo backfill published near the head (a chain_sync's follow_head) that a deep reorg
    then replaced: once compaction has rebuilt the range, its partitions answer, not the
    backfill's stale files (the backfill itself is not rebuilt yet, see docs)."""
    from dataclasses import replace

    from tests.query.test_unified_relations import cold_files

    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=40, txs_per_block=2)
    follower = make_follower(url, hot_engine, Recorder(), batch_size=50, window_blocks=4)
    catch_up(follower)
    backfill = [replace(f, priority=3) for f in cold_files(cold, url, 0, follower.tip - 5)]
    config = compaction_config()
    compact(config)
    devchain.reorg(url, 30)
    follower.step()
    catch_up(follower)
    compact(config)
    assert federated(tmp_path, cold=tuple(backfill)) == node_totals(url, follower.tip)


def _segments(engine):
    with engine.connect() as conn:
        return segments_live(conn, chain_id=CHAIN, dataset="blocks")
