"""A property over real anvil chains: whatever the partition size, finality depth, hot window
and reorg depth (shallow in the hot rows or deep into cold), after following, compacting,
reorging, following and compacting again, every row the query engine returns for `blocks`,
`transactions` and `logs` is the node's, once."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.chain.compaction_helpers import compact, compaction_config, federated_rows
from tests.chain.test_block_follower import Recorder, catch_up, make_follower, node_blocks
from trace_chain import devchain

ROWS = {
    "blocks": "SELECT block_number, block_hash, parent_hash, gas_used FROM blocks "
    "ORDER BY block_number",
    "transactions": "SELECT block_number, transaction_index, transaction_hash, value "
    "FROM transactions ORDER BY block_number, transaction_index",
    "logs": "SELECT block_number, log_index, transaction_hash, data FROM logs "
    "ORDER BY block_number, log_index",
}


def engine_rows(tmp_path) -> dict[str, list[tuple]]:
    return {
        dataset: [tuple(row.values()) for row in federated_rows(tmp_path, sql)]
        for dataset, sql in ROWS.items()
    }


def node_rows(url: str, tip: int) -> dict[str, list[tuple]]:
    node = node_blocks(url, 0, tip + 1)
    return {
        "blocks": [(b["number"], b["hash"], b["parent_hash"], b["gas_used"]) for b in node.blocks],
        "transactions": [
            (t["block_number"], t["transaction_index"], t["hash"], t["value"])
            for t in node.transactions
        ],
        "logs": [
            (e["block_number"], e["log_index"], e["transaction_hash"], e["data"]) for e in node.logs
        ],
    }


def _same(got: dict, want: dict) -> None:
    for dataset in ROWS:  # wei: the engine's Decimal equals the node's int
        assert got[dataset] == want[dataset], dataset


def _empty(engine) -> None:
    from trace_chain import cold_segments  # noqa: F401 - declared on metadata: emptied too
    from trace_chain.hot_schema import metadata

    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)}"))


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    chunk=st.integers(3, 8),
    finality=st.integers(0, 5),
    window=st.integers(0, 6),
    depth=st.integers(1, 25),
)
def test_every_row_is_the_nodes_whatever_the_line_and_the_reorg(
    hot_engine, tmp_path_factory, monkeypatch, chunk, finality, window, depth
):
    root = tmp_path_factory.mktemp("example")
    monkeypatch.setenv("TRACE_OBJECT_STORE_URL", (root / "objects").as_uri())
    monkeypatch.setenv("TRACE_STAGING_DIR", str(root / "staging"))
    _empty(hot_engine)
    config = compaction_config(
        chunk_blocks=chunk, finality_depth_blocks=finality, hot_window_blocks=window
    )
    note(f"example: chunk={chunk} finality={finality} window={window} depth={depth}")
    with devchain.Anvil() as node:
        devchain.generate_traffic(node.url, blocks=28, txs_per_block=1)
        follower = make_follower(node.url, hot_engine, Recorder(), batch_size=50)
        catch_up(follower)
        compact(config)
        _same(engine_rows(root), node_rows(node.url, follower.tip))
        devchain.reorg(node.url, depth)
        devchain.mine(node.url, 2)
        follower.step()
        catch_up(follower)
        _same(engine_rows(root), node_rows(node.url, follower.tip))
        compact(config)
        _same(engine_rows(root), node_rows(node.url, follower.tip))
