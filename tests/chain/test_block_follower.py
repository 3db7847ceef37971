"""block_follower against a real anvil node and the real hot tables: no gap, reorgs of several
depths (one deeper than the in-memory window), and resume from the hot tip."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from trace_chain import devchain
from trace_chain.adapter import ChainAdapter
from trace_chain.hot_schema import hot_blocks, hot_chain_status, hot_logs, hot_transactions
from trace_chain.rpc import RpcPool
from trace_operators.block_follower import Follower, FollowerConfig, follower_adapter
from trace_operators.context import PermanentError, TaskContext
from trace_operators.context import TaskScope as OperatorScope

CHAIN = 31337


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, events):
        self.events.extend(events)
        return events

    def of_type(self, kind):
        return [e for e in self.events if e["type"] == kind]


def make_follower(url, engine, recorder, *, org_id=1, job="follow", resume=True, **config):
    ctx = TaskContext(
        task_id=1,
        attempt=1,
        org_id=org_id,
        dag_name="chain",
        job_name=job,
        config={},
        scope=OperatorScope(),
        emit_events=recorder,
    )
    settings = FollowerConfig(chain_id=CHAIN, rpc_pool="unused", **config)
    pool = RpcPool("test", [url], timeout=10.0, max_retries=1)
    follower = Follower(ctx, settings, follower_adapter(pool, settings), engine)
    if resume:
        follower.resume()
    return follower


def catch_up(follower):
    while follower.step():
        pass


def node_blocks(url, start, end):
    with RpcPool("check", [url], timeout=10.0) as pool:
        return ChainAdapter(pool).block_range_with_receipts(start, end)


def hot_rows(engine, table, order):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*order))]


def assert_hot_equals_node(engine, url, start, end):
    node = node_blocks(url, start, end)
    blocks = hot_rows(engine, hot_blocks, [hot_blocks.c.block_number])
    assert [b["block_number"] for b in blocks] == list(range(start, end))  # no gap
    assert [(b["block_hash"], b["parent_hash"]) for b in blocks] == [
        (b["hash"], b["parent_hash"]) for b in node.blocks
    ]
    txs = hot_rows(
        engine,
        hot_transactions,
        [hot_transactions.c.block_number, hot_transactions.c.transaction_index],
    )
    assert [(t["transaction_hash"], int(t["value"]), t["success"]) for t in txs] == [
        (t["hash"], t["value"], t["success"]) for t in node.transactions
    ]
    logs = hot_rows(engine, hot_logs, [hot_logs.c.block_number, hot_logs.c.log_index])
    assert [
        (entry["block_hash"], entry["log_index"], entry["topic0"], entry["data"]) for entry in logs
    ] == [
        (entry["block_hash"], entry["log_index"], entry["topic0"], entry["data"])
        for entry in node.logs
    ]
    return node


def test_follower_ingests_every_block_transaction_and_log(chain_with_traffic, hot_engine):
    url = chain_with_traffic.url
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, batch_size=7, emit_every_blocks=5)
    catch_up(follower)
    head = follower.tip
    node = assert_hot_equals_node(hot_engine, url, 0, head + 1)
    assert len(node.logs) > 20 and len(node.transactions) > 50
    events = recorder.of_type("output")
    assert [(e["range_start"], e["range_end"]) for e in events] == [
        (s, s + 5) for s in range(0, head + 1 - (head + 1) % 5, 5)
    ]
    with hot_engine.connect() as conn:
        status = conn.execute(sa.select(hot_chain_status)).one()._mapping
    assert (status["tip_block"], status["head_block"], status["reorg_count"]) == (head, head, 0)


def test_follower_resumes_from_the_hot_tip_without_gap_or_duplicate(fresh_anvil, hot_engine):
    devchain.generate_traffic(fresh_anvil.url, blocks=6, txs_per_block=3)
    first = make_follower(fresh_anvil.url, hot_engine, Recorder())
    catch_up(first)
    stopped_at = first.tip
    devchain.generate_traffic(fresh_anvil.url, blocks=5, txs_per_block=3)
    recorder = Recorder()
    second = make_follower(fresh_anvil.url, hot_engine, recorder)
    assert second.next_block == stopped_at + 1
    catch_up(second)
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, second.tip + 1)
    assert recorder.of_type("output")[0]["range_start"] == stopped_at + 1


@pytest.mark.parametrize("depth", [1, 3, 7])
def test_reorg_replaces_orphans_and_records_exact_invalidation(fresh_anvil, hot_engine, depth):
    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=12, txs_per_block=3)
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, window_blocks=4)  # 7 > window
    catch_up(follower)
    old_tip = follower.tip
    orphaned = {
        b["block_number"]: b["block_hash"]
        for b in hot_rows(hot_engine, hot_blocks, [hot_blocks.c.block_number])
    }
    devchain.reorg(url, depth)
    catch_up(follower)
    follower.step()  # the tip check runs when there is nothing new to fetch
    catch_up(follower)
    node = assert_hot_equals_node(hot_engine, url, 0, follower.tip + 1)
    replaced = {
        b["number"] for b in node.blocks if orphaned.get(b["number"]) not in (None, b["hash"])
    }
    assert replaced == set(range(old_tip - depth + 1, old_tip + 1))
    stored_hashes = {
        b["block_hash"] for b in hot_rows(hot_engine, hot_blocks, [hot_blocks.c.block_number])
    }
    assert not stored_hashes & {orphaned[n] for n in replaced}
    invalidations = recorder.of_type("invalidation")
    assert [(i["range_start"], i["range_end"]) for i in invalidations] == [
        (old_tip - depth + 1, old_tip + 1)
    ]
    with hot_engine.connect() as conn:
        status = conn.execute(sa.select(hot_chain_status)).one()._mapping
    assert (status["reorg_count"], status["last_reorg_depth"]) == (1, depth)


def test_restart_announces_blocks_written_but_not_yet_announced(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 12)  # blocks 0..12
    first = Recorder()
    follower = make_follower(fresh_anvil.url, hot_engine, first, emit_every_blocks=5)
    catch_up(follower)
    assert [(e["range_start"], e["range_end"]) for e in first.of_type("output")] == [
        (0, 5),
        (5, 10),
    ]
    # Blocks 10..12 are stored but not announced when the attempt dies; 3 more arrive.
    devchain.mine(fresh_anvil.url, 3)
    second = Recorder()
    catch_up(make_follower(fresh_anvil.url, hot_engine, second, emit_every_blocks=5))
    assert [(e["range_start"], e["range_end"]) for e in second.of_type("output")] == [(10, 15)]


def test_a_node_behind_our_tip_is_waited_for_not_treated_as_a_reorg(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 10)
    recorder = Recorder()
    follower = make_follower(fresh_anvil.url, hot_engine, recorder)
    catch_up(follower)
    tip = follower.tip

    class LaggingAdapter:
        """The same node, answering as if its head were 3 blocks back (a lagging endpoint)."""

        def __init__(self, inner):
            self.inner = inner

        def head_number(self):
            return self.inner.head_number() - 3

        def head(self):
            number = self.head_number()
            return self.inner.blocks(number, number + 1, full_transactions=False)[0]

        def __getattr__(self, name):
            return getattr(self.inner, name)

    follower.adapter = LaggingAdapter(follower.adapter)
    assert follower.step() == 0
    assert follower.tip == tip and not recorder.of_type("invalidation")
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, tip + 1)


def test_crash_between_invalidation_and_delete_is_redone_on_restart(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 10)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder())
    catch_up(follower)
    devchain.reorg(fresh_anvil.url, 2)

    def dies_after_invalidating(events):
        raise SystemExit("worker killed")  # the invalidation call is where the attempt dies

    follower.ctx.emit_events = dies_after_invalidating
    with pytest.raises(SystemExit):
        follower.step()
    recorder = Recorder()
    restarted = make_follower(fresh_anvil.url, hot_engine, recorder)
    catch_up(restarted)
    restarted.step()
    assert [(i["range_start"], i["range_end"]) for i in recorder.of_type("invalidation")] == [
        (9, 11)
    ]
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, restarted.tip + 1)


def test_wrong_chain_is_refused(fresh_anvil, hot_engine):
    from trace_operators.context import PermanentError

    with pytest.raises(PermanentError, match="serves chain 31337"):
        ctx = TaskContext(1, 1, 1, "chain", "follow", {}, OperatorScope(), emit_events=Recorder())
        pool = RpcPool("test", [fresh_anvil.url])
        Follower(
            ctx, FollowerConfig(chain_id=1, rpc_pool="x"), ChainAdapter(pool), hot_engine
        ).resume()


def test_blocks_stored_before_any_announcement_are_announced_after_a_crash(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 12)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), emit_every_blocks=5)

    def killed_while_announcing(events):
        raise SystemExit("worker killed")

    follower.ctx.emit_events = killed_while_announcing
    with pytest.raises(SystemExit):
        follower.step()  # blocks 0..12 are stored, nothing was announced
    recorder = Recorder()
    catch_up(make_follower(fresh_anvil.url, hot_engine, recorder, emit_every_blocks=5))
    assert [(e["range_start"], e["range_end"]) for e in recorder.of_type("output")] == [
        (0, 5),
        (5, 10),
    ]


def test_one_writer_per_chain(hot_engine):
    import threading

    from trace_chain.hot_store import chain_writer_lock

    events = []
    first_holds = threading.Event()
    release_first = threading.Event()

    def first():
        with chain_writer_lock(hot_engine, chain_id=CHAIN, wait=lambda: None):
            events.append("first in")
            first_holds.set()
            release_first.wait(5)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_holds.wait(5)
    waits = []

    def waiting():
        waits.append(1)
        if len(waits) == 3:
            release_first.set()
        assert len(waits) < 100, "the lock was never released"
        import time

        time.sleep(0.05)

    with chain_writer_lock(hot_engine, chain_id=CHAIN, wait=waiting):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    assert len(waits) >= 3
    with chain_writer_lock(hot_engine, chain_id=CHAIN + 1, wait=lambda: None):
        pass  # another chain is not blocked


def test_reset_outputs_wipes_the_chain_once_and_never_another_orgs_rows(fresh_anvil, hot_engine):
    devchain.mine(fresh_anvil.url, 6)
    catch_up(make_follower(fresh_anvil.url, hot_engine, Recorder()))
    assert len(hot_rows(hot_engine, hot_blocks, [hot_blocks.c.block_number])) == 7

    reset = make_follower(
        fresh_anvil.url, hot_engine, Recorder(), start_block=3, reset_outputs=True
    )
    assert hot_rows(hot_engine, hot_blocks, [hot_blocks.c.block_number]) == []  # wiped
    catch_up(reset)
    # A restart of the same job and start block does not wipe again.
    again = make_follower(
        fresh_anvil.url, hot_engine, Recorder(), start_block=3, reset_outputs=True
    )
    assert again.tip == reset.tip
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 3, reset.tip + 1)

    # Another org's follower of the same chain relies on the rows too; after that, no one's
    # reset may delete them.
    catch_up(make_follower(fresh_anvil.url, hot_engine, Recorder(), org_id=2, start_block=3))
    with pytest.raises(PermanentError, match=r"reset_outputs refused: .* 1 other org"):
        make_follower(fresh_anvil.url, hot_engine, Recorder(), start_block=0, reset_outputs=True)
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 3, reset.tip + 1)
    with hot_engine.connect() as conn:
        orgs = conn.execute(sa.select(hot_chain_status.c.follower_org_ids)).scalar_one()
    assert sorted(orgs) == [1, 2]


def announced(recorder):
    """Block numbers announced, in order, with each invalidation as ('inv', start, end)."""
    seen = []
    for event in recorder.events:
        if event["type"] == "output":
            seen.extend(range(event["range_start"], event["range_end"]))
        else:
            seen.append(("inv", event["range_start"], event["range_end"]))
    return seen


def test_another_orgs_follower_announces_the_writers_rows_and_its_reorgs(fresh_anvil, hot_engine):
    url = fresh_anvil.url
    devchain.mine(url, 6)
    writer_events, standby_events = Recorder(), Recorder()
    writer = make_follower(url, hot_engine, writer_events)
    standby = make_follower(url, hot_engine, standby_events, org_id=2, resume=False)
    catch_up(writer)
    standby.standby_step()
    assert announced(standby_events) == list(range(0, 7))  # what the writer stored

    devchain.mine(url, 3)
    catch_up(writer)
    devchain.reorg(url, 2)
    writer.step()  # the writer's reorg: it deletes [8, 10), logs it, rewrites
    catch_up(writer)
    standby.standby_step()
    assert ("inv", 8, 10) in announced(writer_events)
    # The standby had announced only 0..6, so this rewrite invalidates nothing of its own.
    assert announced(standby_events) == list(range(0, 10))
    devchain.reorg(url, 3)
    writer.step()
    catch_up(writer)
    standby.standby_step()
    assert announced(standby_events)[10:] == [("inv", 7, 10), 7, 8, 9]
    with hot_engine.connect() as conn:  # the chain's status is the writer's alone
        assert conn.execute(sa.select(hot_chain_status.c.tip_block)).scalar_one() == writer.tip

    # The writer stops; the standby becomes the writer and continues without gap.
    devchain.mine(url, 2)
    standby.resume()
    catch_up(standby)
    assert announced(standby_events)[-2:] == [10, 11]
    assert_hot_equals_node(hot_engine, url, 0, 12)


def test_each_follower_keeps_its_own_announcement_cursor(fresh_anvil, hot_engine):
    url = fresh_anvil.url
    devchain.mine(url, 4)
    first = Recorder()
    catch_up(make_follower(url, hot_engine, first))
    devchain.mine(url, 3)
    # A second job of the same org starts later: it announces from its own start, and the
    # first job, restarted, resumes from where it announced, not from the second's position.
    second = Recorder()
    catch_up(make_follower(url, hot_engine, second, job="follow2", start_block=2))
    again = Recorder()
    catch_up(make_follower(url, hot_engine, again))
    assert announced(first) == list(range(0, 5))
    assert announced(second) == list(range(2, 8))
    assert announced(again) == list(range(5, 8))


def test_standby_takes_over_when_the_writer_stops(fresh_anvil, hot_engine, monkeypatch):
    import threading
    import time

    from trace_operators import block_follower

    monkeypatch.setenv("TRACE_RPC_POOL_ANVIL", fresh_anvil.url)
    devchain.mine(fresh_anvil.url, 3)
    recorders, contexts, threads = {}, {}, {}
    for org_id in (1, 2):
        recorders[org_id] = Recorder()
        contexts[org_id] = TaskContext(
            task_id=org_id,
            attempt=1,
            org_id=org_id,
            dag_name="chain",
            job_name="follow",
            config={"chain_id": CHAIN, "rpc_pool": "anvil", "poll_interval_seconds": 0.05},
            scope=OperatorScope(),
            emit_events=recorders[org_id],
        )
    errors = []

    def run(org_id):
        try:
            block_follower.run(contexts[org_id])
        except Exception as exc:  # LeaseLost when stopped; anything else fails the test
            if type(exc).__name__ != "LeaseLost":
                errors.append(exc)

    def wait_for(predicate):
        deadline = time.monotonic() + 15
        while not predicate():
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.05)

    threads[1] = threading.Thread(target=run, args=(1,))
    threads[1].start()
    wait_for(lambda: announced(recorders[1])[-1:] == [3])
    threads[2] = threading.Thread(target=run, args=(2,))
    threads[2].start()
    devchain.mine(fresh_anvil.url, 2)
    wait_for(lambda: announced(recorders[2])[-1:] == [5])  # org 2 on standby
    contexts[1].stop_event.set()
    threads[1].join(5)
    devchain.mine(fresh_anvil.url, 2)
    wait_for(lambda: announced(recorders[2])[-1:] == [7])  # org 2 now writes
    contexts[2].stop_event.set()
    threads[2].join(5)
    assert announced(recorders[2]) == list(range(0, 8))
    assert announced(recorders[1]) == list(range(0, 6))[: len(announced(recorders[1]))]
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, 8)
    assert not errors


def test_a_head_that_moves_between_calls_is_not_a_reorg(fresh_anvil, hot_engine):
    url = fresh_anvil.url
    devchain.mine(url, 5)
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder)
    catch_up(follower)
    tip = follower.tip
    devchain.mine(url, 1)

    class StaleNumber:
        """eth_blockNumber answered before the node moved, the head block after."""

        def __init__(self, inner):
            self.inner = inner

        def head_number(self):
            return tip

        def __getattr__(self, name):
            return getattr(self.inner, name)

    follower.adapter = StaleNumber(follower.adapter)
    follower._catching_up = True
    follower.step()
    catch_up(follower)
    assert not recorder.of_type("invalidation")
    assert_hot_equals_node(hot_engine, url, 0, tip + 2)


def test_the_writer_keeps_the_chains_rows_contiguous_whatever_its_start_block(
    fresh_anvil, hot_engine
):
    url = fresh_anvil.url
    devchain.mine(url, 6)
    standby_events = Recorder()
    catch_up(make_follower(url, hot_engine, standby_events, org_id=2))  # rows 0..6, then stops
    devchain.mine(url, 6)
    writer_events = Recorder()
    writer = make_follower(url, hot_engine, writer_events, start_block=10)
    catch_up(writer)
    assert_hot_equals_node(hot_engine, url, 0, 13)  # 7..9 written too: no gap
    assert announced(writer_events) == [10, 11, 12]  # its own dataset starts at 10
    standby = make_follower(url, hot_engine, standby_events, org_id=2, resume=False)
    standby.standby_step()
    assert announced(standby_events) == list(range(0, 13))

    # A reorg reaching below the writer's start_block: it still finds the fork and deletes
    # down to it, and each follower invalidates only what it announced.
    devchain.reorg(url, 5)
    writer.step()
    catch_up(writer)
    standby.standby_step()
    assert ("inv", 10, 13) in announced(writer_events)
    assert announced(standby_events)[13:] == [("inv", 8, 13), 8, 9, 10, 11, 12]
    assert_hot_equals_node(hot_engine, url, 0, 13)

    # A follower that would announce blocks below the chain's lowest stored block is refused.
    with hot_engine.begin() as conn:
        conn.execute(hot_blocks.delete().where(hot_blocks.c.block_number < 3))
    with pytest.raises(PermanentError, match="hot rows start at block 3"):
        make_follower(url, hot_engine, Recorder(), org_id=3)


def test_reannouncements_after_a_reorg_keep_the_emit_grid(fresh_anvil, hot_engine):
    url = fresh_anvil.url
    devchain.mine(url, 11)  # blocks 0..11
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, emit_every_blocks=5)
    catch_up(follower)
    devchain.reorg(url, 4)  # replaces 8..11, inside the announced [5, 10)
    follower.step()
    catch_up(follower)
    ranges = [(e["range_start"], e["range_end"], e["type"][0]) for e in recorder.events]
    assert ranges == [(0, 5, "o"), (5, 10, "o"), (5, 12, "i"), (5, 10, "o")]


def test_a_new_followers_cursor_is_saved_before_it_announces(fresh_anvil, hot_engine):
    from trace_chain import hot_store

    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), resume=False)
    follower.prepare()
    cursor = hot_store.follower_get(hot_engine, chain_id=CHAIN, follower=follower.key)
    assert cursor is not None and cursor["emitted_upto"] == 0


def test_the_writer_notices_when_its_lock_session_ends(hot_engine):
    from trace_chain.hot_store import chain_writer_lock, chain_writer_lock_key

    # A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits).
    key = chain_writer_lock_key(CHAIN) & 0xFFFFFFFFFFFFFFFF
    holder = sa.text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = :high AND objid = :low AND objsubid = 1"
    ).bindparams(high=key >> 32, low=key & 0xFFFFFFFF)
    with chain_writer_lock(hot_engine, chain_id=CHAIN, wait=lambda: None) as still_held:
        assert still_held()
        # End exactly the session that holds this lock in this run's database: other runs and
        # a Lite stack on the same server keep theirs.
        with hot_engine.begin() as conn:
            (pid,) = conn.execute(holder).scalars().all()
            assert conn.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar()
        assert not still_held()


def test_a_writer_superseded_unnoticed_cannot_write(fresh_anvil, hot_engine):
    from trace_chain.hot_store import StaleWriter

    url = fresh_anvil.url
    devchain.mine(url, 3)
    old = make_follower(url, hot_engine, Recorder())
    catch_up(old)
    # A second follower becomes the writer while the first still thinks it is (its lock's
    # session ended without it noticing).
    new = make_follower(url, hot_engine, Recorder(), org_id=2)
    devchain.mine(url, 2)
    with pytest.raises(StaleWriter, match="newer writer"):
        old.step()
    devchain.reorg(url, 3)  # replaces the old writer's tip: its delete is refused too
    with pytest.raises(StaleWriter):
        old._handle_reorg(old.adapter.head_number())
    catch_up(new)
    assert_hot_equals_node(hot_engine, url, 0, new.tip + 1)


def test_rpc_outage_is_waited_out_in_the_attempt_and_a_lost_lease_stops_it(
    fresh_anvil, hot_engine, monkeypatch
):
    """The node answers 500 for a while: `run` keeps going (no exception, so the attempt is
    not failed) and catches up afterwards; losing the lease while waiting stops it at once."""
    import threading
    import time

    from tests.chain.servers import RpcProxy
    from trace_operators import block_follower
    from trace_operators.context import LeaseLost

    failing = threading.Event()
    served_500 = []

    def hook(body):
        if failing.is_set():
            served_500.append(body)
            return 500, b"upstream exploded"
        return None

    devchain.mine(fresh_anvil.url, 3)
    with RpcProxy(fresh_anvil.url, hook=hook) as proxy:
        monkeypatch.setenv("TRACE_RPC_POOL_FLAKY", proxy.url)
        monkeypatch.setenv("TRACE_RPC_POOL_FLAKY_RETRIES", "1")
        recorder = Recorder()
        ctx = TaskContext(
            task_id=1,
            attempt=1,
            org_id=1,
            dag_name="chain",
            job_name="follow",
            config={"chain_id": CHAIN, "rpc_pool": "flaky", "poll_interval_seconds": 0.05},
            scope=OperatorScope(),
            emit_events=recorder,
        )
        outcome = []

        def run():
            try:
                block_follower.run(ctx)
                outcome.append("returned")
            except BaseException as exc:  # LeaseLost is the expected end
                outcome.append(exc)

        def wait_for(predicate):
            deadline = time.monotonic() + 30
            while not predicate():
                assert time.monotonic() < deadline and not outcome, outcome
                time.sleep(0.05)

        thread = threading.Thread(target=run)
        thread.start()
        wait_for(lambda: announced(recorder)[-1:] == [3])
        failing.set()
        # Several calls failed on every round (two requests per call): the pool gave up more
        # than once, and the follower is still in its attempt.
        wait_for(lambda: len(served_500) >= 6)
        assert thread.is_alive() and not outcome
        devchain.mine(fresh_anvil.url, 2)
        failing.clear()
        wait_for(lambda: announced(recorder)[-1:] == [5])  # caught up after the outage
        failing.set()
        wait_for(lambda: len(served_500) >= 8)
        ctx.stop_event.set()  # the lease is lost while it backs off
        thread.join(timeout=20)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], LeaseLost)
    assert_hot_equals_node(hot_engine, fresh_anvil.url, 0, 6)
