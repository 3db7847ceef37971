"""parquet_compact against a real anvil chain, the real hot tables, a real object store and the
real query engine: federated totals per block range equal hot-only plus cold-only totals and
the node's, before a compaction, after it moves the line, while it commits, after a reorg in
the hot range; a re-run (also after a crash at any step) changes nothing; the fence."""

from __future__ import annotations

import itertools
import json
import threading

import pytest

from tests.chain.compaction_helpers import (
    CHAIN,
    assert_totals,
    compact,
    compaction_config,
    expected_line,
    federated,
    hot_low,
    live,
    node_totals,
)
from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from trace_chain import chain_schema, compaction, devchain
from trace_operators import parquet_compact
from trace_operators.context import ConfigError


@pytest.fixture
def followed(fresh_anvil, hot_engine, cold):
    devchain.generate_traffic(fresh_anvil.url, blocks=18, txs_per_block=2)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), batch_size=50)
    catch_up(follower)
    return fresh_anvil.url, follower


def test_compaction_moves_the_line_and_totals_hold_before_and_after(
    followed, hot_engine, cold, tmp_path
):
    url, follower = followed
    config = compaction_config()
    tip = follower.tip
    before = assert_totals(hot_engine, url, tip, tmp_path)  # all hot, nothing cold
    assert live(hot_engine) == []

    recorder = Recorder()
    outcome = compact(config, recorder)
    line = expected_line(tip, config)
    assert line > 10 and hot_low(hot_engine) == line  # the line moved
    chunks = [(s, s + 5) for s in range(0, (tip - 2) // 5 * 5, 5)]
    for dataset in chain_schema.DATASETS:
        assert live(hot_engine, dataset) == chunks
    # Every partition committed through the task API, with its manifest; files on the store.
    published = recorder.of_type("output")
    assert sorted((e["attributes"]["dataset"], e["range_start"]) for e in published) == sorted(
        (d, s) for d in chain_schema.DATASETS for s, _ in chunks
    )
    for event in published:
        location = event["publication"]["location"]
        assert cold.exists(location.removeprefix(cold.uri()) + "_SUCCESS")
        assert event["publication"]["manifest"]["schema_version"] == chain_schema.SCHEMA_VERSION
    assert outcome.trimmed == (0, line)
    assert assert_totals(hot_engine, url, tip, tmp_path) == before

    # More blocks, a second run: the line moves again, totals still hold.
    devchain.generate_traffic(url, blocks=8, txs_per_block=2)
    catch_up(follower)
    compact(config)
    assert hot_low(hot_engine) == expected_line(follower.tip, config) > line
    assert_totals(hot_engine, url, follower.tip, tmp_path)


def test_cold_files_are_sorted_with_row_groups_and_statistics(followed, hot_engine, cold):
    import pyarrow.parquet as pq

    compact(compaction_config())
    with hot_engine.connect() as conn:
        from trace_chain.cold_segments import segments_live

        segment = next(
            s
            for s in segments_live(conn, chain_id=CHAIN, dataset="transactions")
            if s.row_count > 4
        )
    path = cold.root / (segment.location.removeprefix(cold.uri()) + segment.files[0]["name"])
    metadata = pq.read_metadata(path)
    assert metadata.num_row_groups > 1  # row_group_size 4
    stats = [metadata.row_group(i).column(1).statistics for i in range(metadata.num_row_groups)]
    assert all(s is not None and s.has_min_max for s in stats)
    assert [s.min for s in stats] == sorted(s.min for s in stats)  # block order
    table = pq.read_table(path)
    columns = [table.column(k).to_pylist() for k in chain_schema.KEYS["transactions"]]
    keys = list(zip(*columns, strict=True))
    assert keys == sorted(keys)
    assert table.schema.equals(chain_schema.arrow_schema("transactions"), check_metadata=False)


def test_re_running_is_safe_and_commits_nothing_new(followed, hot_engine, cold, tmp_path):
    url, follower = followed
    config = compaction_config()
    compact(config)
    segments, line = live(hot_engine), hot_low(hot_engine)
    again = Recorder()
    outcome = compact(config, again)
    assert again.events == [] and outcome.committed == [] and outcome.trimmed is None
    assert (live(hot_engine), hot_low(hot_engine)) == (segments, line)
    assert_totals(hot_engine, url, follower.tip, tmp_path)


class Crash(Exception):
    pass


@pytest.mark.parametrize("at", ["published", "committed", "recorded", "trimmed"])
def test_a_run_that_dies_at_any_step_is_finished_by_the_next(
    followed, hot_engine, cold, tmp_path, at
):
    url, follower = followed
    config = compaction_config()

    def die(name):
        if name == at:
            raise Crash(name)

    with pytest.raises(Crash):
        compact(config, stage=die)
    assert_totals(hot_engine, url, follower.tip, tmp_path)  # whatever step it died at
    compact(config, attempt=2)
    assert hot_low(hot_engine) == expected_line(follower.tip, config)
    chunks = live(hot_engine)
    assert chunks == [(s, s + 5) for s in range(0, chunks[-1][1], 5)]  # one live per chunk
    assert_totals(hot_engine, url, follower.tip, tmp_path)


def test_queries_while_compaction_commits_see_every_block_once(
    followed, hot_engine, cold, tmp_path
):
    url, follower = followed
    expected = node_totals(url, follower.tip)
    seen = {}

    def query_at(name):  # a query at every step that changes what a query can see
        seen[name] = federated(tmp_path)

    answers, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            answers.append(federated(tmp_path))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        compact(compaction_config(), stage=query_at)
        # And until the hammer has run at least a few queries overlapping the run.
        while len(answers) < 3:
            answers.append(federated(tmp_path))
    finally:
        stop.set()
        thread.join()
    assert set(seen) == {"published", "committed", "recorded", "trimmed"}
    assert all(answer == expected for answer in seen.values())
    assert all(answer == expected for answer in answers)


def test_a_reorg_in_the_hot_range_after_compaction(followed, hot_engine, cold, tmp_path):
    url, follower = followed
    config = compaction_config()
    compact(config)
    line = hot_low(hot_engine)
    devchain.reorg(url, 2)  # within the hot window, above the line
    devchain.mine(url, 1)
    catch_up(follower)
    follower.step()
    catch_up(follower)
    assert hot_low(hot_engine) == line  # the reorg stayed above the line
    assert_totals(hot_engine, url, follower.tip, tmp_path)
    compact(config)
    assert_totals(hot_engine, url, follower.tip, tmp_path)


def test_a_reorg_between_read_and_record_is_fenced(followed, hot_engine, cold, tmp_path):
    """The hot rows a run compacted are rewritten before it records them: nothing is recorded,
    no hot row is deleted; the next run compacts the new rows."""
    url, follower = followed
    config = compaction_config()
    first_chunk_last = 4

    def reorg_under_it(name):
        if name == "committed" and not live(hot_engine):
            devchain.reorg(url, follower.tip - first_chunk_last + 1)  # reaches block 4
            devchain.mine(url, 1)
            follower.step()
            catch_up(follower)

    with pytest.raises(compaction.HotChanged):
        compact(config, stage=reorg_under_it)
    assert live(hot_engine) == [] and hot_low(hot_engine) == 0
    assert_totals(hot_engine, url, follower.tip, tmp_path)
    compact(config)
    assert_totals(hot_engine, url, follower.tip, tmp_path)


def test_config_is_checked_field_by_field():
    with pytest.raises(ConfigError) as caught:
        parquet_compact.config_parse(
            {"chain_id": "1", "chunk_blocks": 0, "hot_window_blocks": -1, "colour": "red"}
        )
    assert set(caught.value.errors) == {
        "config.chain_id: must be an integer, got '1'",
        "config.chunk_blocks: must be >= 1",
        "config.hot_window_blocks: must be >= 0",
        "config.colour: unknown field",
    }


def test_publications_lie_under_the_declared_prefixes(followed, hot_engine, cold):
    recorder = Recorder()
    compact(compaction_config(), recorder)
    prefixes = [
        cold.uri() + p for p in parquet_compact.output_prefixes(compaction_config(), None, None)
    ]
    for event in recorder.of_type("output"):
        location = event["publication"]["location"]
        assert any(location.startswith(p) for p in prefixes), location
        assert json.loads(json.dumps(event["publication"]["manifest"]))["files"]


def test_small_partitions_are_merged_into_larger_ones(followed, hot_engine, cold, tmp_path):
    url, follower = followed
    devchain.generate_traffic(url, blocks=12, txs_per_block=2)
    catch_up(follower)
    recorder = Recorder()
    # 5-block partitions; blocks are merged up to 10 rows, so two by two.
    outcome = compact(compaction_config(merge_target_rows=10), recorder)
    line = hot_low(hot_engine)
    merged = [c for c in outcome.committed if c.kind == "merged"]
    assert merged and all(c.dataset in chain_schema.DATASETS for c in merged)
    blocks = live(hot_engine, "blocks")
    below = [r for r in blocks if r[1] <= line]
    assert below and all(end - start == 10 for start, end in below[: len(below) // 2 * 2])
    assert [r[0] for r in blocks] == sorted(r[0] for r in blocks)
    assert blocks[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    # The merged partitions were committed like any other, under their own range.
    merged_events = [
        e for e in recorder.of_type("output") if e["attributes"]["compaction"] == "merged"
    ]
    assert {
        (e["range_start"], e["range_end"])
        for e in merged_events
        if e["attributes"]["dataset"] == "blocks"
    } == {r for r in blocks if r[1] - r[0] == 10}
    assert_totals(hot_engine, url, follower.tip, tmp_path)
    # A second run merges nothing more that is already merged.
    again = compact(compaction_config(merge_target_rows=10))
    assert [c for c in again.committed if c.kind == "merged"] == []
    assert_totals(hot_engine, url, follower.tip, tmp_path)


def test_partitions_are_merged_by_bytes_too(followed, hot_engine, cold, tmp_path):
    url, follower = followed
    compact(compaction_config(merge_target_rows=10**9, merge_target_bytes=1))
    assert all(end - start == 5 for start, end in live(hot_engine))  # each alone is "big"
    with hot_engine.connect() as conn:
        from trace_chain.cold_segments import segments_live

        sizes = [s.bytes for s in segments_live(conn, chain_id=CHAIN, dataset="blocks")]
    target = sizes[0] + sizes[1]  # two small ones reach it together
    compact(compaction_config(merge_target_rows=10**9, merge_target_bytes=target))
    assert live(hot_engine)[0] == (0, 10)
    assert_totals(hot_engine, url, follower.tip, tmp_path)
