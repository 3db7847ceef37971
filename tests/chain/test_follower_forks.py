"""Forks that `anvil_reorg` cannot make: a canonical chain that becomes longer or shorter than
what the follower stored (detected through the parent hash, not "the tip was replaced"), and a
node that serves blocks whose parent does not match — a batch is written only as far as it
links up, and a block that links to nothing stored is never written."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.chain.servers import RpcProxy
from tests.chain.test_block_follower import (
    Recorder,
    assert_hot_equals_node,
    catch_up,
    hot_rows,
    make_follower,
)
from trace_chain import devchain
from trace_chain.hot_schema import hot_blocks, hot_chain_status
from trace_chain.rpc import RpcPool

FORGED = "0x" + "ee" * 32


def rpc(url: str, method: str, *params):
    with RpcPool("forks", [url], timeout=10.0, max_retries=0) as pool:
        return pool.call(method, list(params))


def fork(url: str, snapshot: str, blocks: int) -> None:
    """Return to `snapshot`, then mine `blocks` blocks that differ from the ones before (each
    holds a transfer the original chain never had)."""
    assert rpc(url, "evm_revert", snapshot) is True
    for _ in range(blocks):
        devchain.send_transfers(url, 1)  # automine: one block per transfer


def stored(engine) -> dict[int, str]:
    rows = hot_rows(engine, hot_blocks, [hot_blocks.c.block_number])
    return {row["block_number"]: row["block_hash"] for row in rows}


@pytest.mark.parametrize(
    ("fork_blocks", "window_blocks"),
    [(9, 64), (2, 64), (2, 2)],
    # Past the window: the node's new head (12) is below the hashes kept in memory (14, 15),
    # so whether the tip was replaced is read from the hot table.
    ids=["longer", "shorter", "shorter-past-the-window"],
)
def test_a_fork_that_changes_the_chains_length_is_followed_to_the_new_chain(
    fresh_anvil, hot_engine, fork_blocks, window_blocks
):
    url = fresh_anvil.url
    devchain.mine(url, 10)  # blocks 0..10
    snapshot = rpc(url, "evm_snapshot")
    devchain.mine(url, 5)  # 11..15, to be orphaned
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, window_blocks=window_blocks)
    catch_up(follower)
    assert follower.tip == 15
    orphaned = {n: h for n, h in stored(hot_engine).items() if n > 10}
    fork(url, snapshot, fork_blocks)  # head 19 (longer) or 12 (shorter), forked after block 10
    head = 10 + fork_blocks
    for _ in range(4):  # new blocks to fetch first (longer), or a tip check (shorter)
        catch_up(follower)
        follower.step()
    assert follower.tip == head
    assert_hot_equals_node(hot_engine, url, 0, head + 1)
    assert not set(stored(hot_engine).values()) & set(orphaned.values())
    (invalidation,) = recorder.of_type("invalidation")
    assert (invalidation["range_start"], invalidation["range_end"]) == (11, 16)


def _forge_parent(number: int):
    """A proxy transform: block `number`, wherever the node returns it, names a parent it never
    had, as a node serving another fork (or a broken one) would."""

    def transform(body, answer):
        items = answer if isinstance(answer, list) else [answer]
        for item in items:
            block = item.get("result") if isinstance(item, dict) else None
            if isinstance(block, dict) and block.get("number") == hex(number):
                block["parentHash"] = FORGED
        return answer

    return transform


def test_a_batch_is_written_only_as_far_as_it_links_up(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 20)
    with RpcProxy(fresh_anvil.url, transform=_forge_parent(7)) as proxy:
        recorder = Recorder()
        follower = make_follower(proxy.url, hot_engine, recorder, batch_size=15)
        for _ in range(5):
            follower.step()
        # The first batch (0..14) broke at 7: blocks 0..6 are written, 7 and after never are.
        assert sorted(stored(hot_engine)) == list(range(7))
        assert follower.tip == 6
        assert recorder.of_type("invalidation") == []  # nothing stored was wrong
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, 7)


def test_a_block_whose_parent_is_not_the_stored_tip_is_never_written(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 10)
    recorder = Recorder()
    follower = make_follower(fresh_anvil.url, hot_engine, recorder)
    catch_up(follower)  # 0..10 stored
    devchain.mine(fresh_anvil.url, 3)  # 11..13
    with RpcProxy(fresh_anvil.url, transform=_forge_parent(11)) as proxy:
        follower.adapter = make_follower(proxy.url, hot_engine, Recorder(), resume=False).adapter
        for _ in range(5):
            follower.step()
        assert max(stored(hot_engine)) == 10  # 11 does not link to 10: refused every time
        assert recorder.of_type("invalidation") == []  # and what is stored is not doubted
    follower.adapter = make_follower(fresh_anvil.url, hot_engine, Recorder(), resume=False).adapter
    catch_up(follower)
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, 14)


def test_a_fork_below_the_start_block_is_walked_back_to_it_and_rewrites_every_stored_block(
    fresh_anvil, hot_engine
):
    """The fork point is looked for in growing steps (8, 16, 32 blocks down from the tip): a
    fork below everything stored takes all of them, down to start_block, and the follower
    then rewrites from start_block with no stored block to link to."""
    url = fresh_anvil.url
    devchain.mine(url, 3)  # blocks 0..3
    snapshot = rpc(url, "evm_snapshot")
    devchain.mine(url, 27)  # 4..30, to be orphaned
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, start_block=5)
    catch_up(follower)
    assert follower.tip == 30
    orphaned = set(stored(hot_engine).values())
    fork(url, snapshot, 30)  # head 33, forked after block 3: block 4 and every stored one differ
    for _ in range(3):
        catch_up(follower)
        follower.step()
    assert follower.tip == 33
    assert_hot_equals_node(hot_engine, url, 5, 34)
    assert not set(stored(hot_engine).values()) & orphaned
    (invalidation,) = recorder.of_type("invalidation")
    assert (invalidation["range_start"], invalidation["range_end"]) == (5, 31)
    with hot_engine.connect() as conn:
        status = conn.execute(sa.select(hot_chain_status)).one()._mapping
    assert (status["reorg_count"], status["last_reorg_depth"]) == (1, 26)  # blocks 5..30
