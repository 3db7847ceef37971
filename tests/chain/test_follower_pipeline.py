"""The follower's pipeline against a real anvil: the next batch is fetched while the current one
is written, and that changes none of the guarantees: a failed fetch ahead loses nothing, a lost
lease stops writes with a fetch in flight, and a batch fetched before a reorg is rolled back
with the orphans, never left behind it."""

from __future__ import annotations

import functools
import threading

import pytest

from tests import waiting
from tests.chain.servers import RpcProxy
from tests.chain.test_block_follower import (
    Recorder,
    announced,
    assert_hot_equals_node,
    catch_up,
    make_follower,
    node_blocks,
)
from tests.chain.test_follower_forks import stored
from trace_chain import devchain
from trace_chain.rpc import RpcUnavailable
from trace_operators.context import LeaseLost

wait_for = functools.partial(waiting.wait_for, interval=0.01)


def asks_for_block(body, number: int) -> bool:
    items = body if isinstance(body, list) else [body]
    return any(
        isinstance(item, dict)
        and item.get("method") in ("eth_getBlockByNumber", "eth_getBlockReceipts")
        and item.get("params", [None])[0] == hex(number)
        for item in items
    )


def test_a_fetch_ahead_that_fails_loses_nothing(fresh_anvil, hot_engine):
    devchain.generate_traffic(fresh_anvil.url, blocks=40, txs_per_block=2)
    head = devchain.mine(fresh_anvil.url, 0)
    failures = []

    def fail_block_25_once(body):
        if asks_for_block(body, 25) and not failures:
            failures.append(body)
            return 500, b"upstream exploded"
        return None

    with RpcProxy(fresh_anvil.url, hook=fail_block_25_once) as proxy:
        recorder = Recorder()
        follower = make_follower(proxy.url, hot_engine, recorder, batch_size=10)
        follower.adapter.pool.max_retries = 0  # the failure reaches the follower at once
        follower.step()  # writes [0, 10) and fetches [10, 20) ahead
        follower.step()  # takes [10, 20), fetches [20, 30) ahead, writes [10, 20)
        assert follower.prefetch.ahead == (20, 30)
        with pytest.raises(RpcUnavailable):
            follower.step()  # the fetch ahead failed: nothing written, nothing kept
        assert failures and follower.tip == 19 and max(stored(hot_engine)) == 19
        assert follower.prefetch.ahead is None
        while follower.tip < head:
            follower.step()  # fetches [20, 30) again, now in this thread
        follower.close()
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, head + 1)
    assert announced(recorder) == list(range(head + 1))  # every block once, in order


def test_no_write_after_the_lease_is_lost_with_a_fetch_in_flight(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 30)
    release = threading.Event()

    def hold_block_10(body):
        if asks_for_block(body, 10):
            release.wait(10)  # the fetch ahead is in flight while the lease is lost
        return None

    with RpcProxy(fresh_anvil.url, hook=hold_block_10) as proxy:
        recorder = Recorder()
        follower = make_follower(proxy.url, hot_engine, recorder, batch_size=10)
        follower.step()
        assert follower.prefetch.ahead == (10, 20) and not follower.prefetch.ready()
        follower.ctx.stop_event.set()  # the heartbeat lost the lease
        release.set()
        with pytest.raises(LeaseLost):
            follower.step()
        follower.close()
    assert sorted(stored(hot_engine)) == list(range(10))  # the fetched batch was not written
    assert announced(recorder) == list(range(10))


def test_a_batch_fetched_before_a_reorg_is_rolled_back_with_the_orphans(fresh_anvil, hot_engine):
    url = fresh_anvil.url
    devchain.mine(url, 30)  # blocks 0..30
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, batch_size=10)
    follower.step()  # writes [0, 10), fetches [10, 20) ahead
    wait_for(follower.prefetch.ready)
    orphans = {b["hash"] for b in node_blocks(url, 8, 31).blocks}
    devchain.reorg(url, 23)  # replaces 8..30: the fetch ahead holds orphans 10..19
    catch_up(follower)
    follower.step()
    catch_up(follower)
    follower.close()
    assert follower.tip == 30
    assert_hot_equals_node(hot_engine, url, 0, 31)
    assert not set(stored(hot_engine).values()) & orphans
    (invalidation,) = recorder.of_type("invalidation")
    # What was stored of the old chain, the batch fetched ahead included, is invalidated.
    assert (invalidation["range_start"], invalidation["range_end"]) == (8, 20)
    assert announced(recorder)[-24:] == [("inv", 8, 20), *range(8, 31)]
