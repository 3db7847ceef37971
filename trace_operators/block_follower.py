"""block_follower: follows a chain's head into the hot tables, with no gap and no orphan.

An always_on singleton. It resumes from the hot tip, fetches blocks with receipts in batches,
writes each batch atomically (COPY), checks parent hashes against what it stored, and on a
reorg walks back to the fork point (past its in-memory window if it must, using the hot
table), deletes orphaned rows, rewrites the canonical range and records a row-range
invalidation through the fenced task API. It emits an event per `emit_every_blocks` blocks.
An RPC node that errors or stalls is waited out inside the attempt (the lease is kept), so
node outages delay the follower without using up its attempts.

While catching up it fetches the next batch while it writes the current one, each batch's
blocks and receipts as several JSON-RPC batch requests in flight (`fetch_concurrency`); writes
stay one at a time and in order, each checked against the lease and the stored tip first.

With `traces: true` it also fetches each block's traces (`trace_block`, parity style) with
the block and writes them to `hot_traces` in the block's transaction, so reorgs and resets
delete and rewrite them with the rest; a node that lacks the method is refused at start.

Config: chain_id, rpc_pool, start_block (0), batch_size (100), emit_every_blocks (1),
window_blocks (64), poll_interval_seconds (chain block time / 4), reset_outputs (false),
fetch_concurrency (4), traces (false).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Annotated, Any

from pydantic import Field

from trace_chain.prefetch import RangePrefetch
from trace_operators.context import ConfigError, PermanentError, TaskContext
from trace_operators.validation import BlockNumber, ChainId, PoolName, StrictModel, validate

log = logging.getLogger(__name__)

STATUS_REFRESH_SECONDS = 1.0


class FollowerConfig(StrictModel):
    chain_id: ChainId
    rpc_pool: PoolName
    start_block: BlockNumber = 0
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    emit_every_blocks: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    window_blocks: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    poll_interval_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    reset_outputs: bool = False
    fetch_concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    traces: bool = False


# Trusted code: it writes the shared hot tables.
RUNTIMES = ("platform",)


def config_parse(config: dict[str, Any]) -> FollowerConfig:
    return validate(FollowerConfig, config, prefix="config", error=ConfigError)


def content_config(config: dict[str, Any]) -> dict[str, Any]:
    """The hot rows depend on the chain and where following starts, not on the RPC pool or
    how it polls and batches."""
    parsed = config_parse(config)
    content: dict[str, Any] = {"chain_id": parsed.chain_id, "start_block": parsed.start_block}
    if parsed.traces:  # the rows include traces; off keeps existing followers' identity
        content["traces"] = True
    return content


class HashWindow:
    """The most recent block hashes kept in memory (number -> hash), oldest evicted first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._hashes: OrderedDict[int, str] = OrderedDict()

    def add(self, number: int, block_hash: str) -> None:
        self._hashes[number] = block_hash
        self._hashes.move_to_end(number)
        while len(self._hashes) > self.size:
            self._hashes.popitem(last=False)

    def get(self, number: int) -> str | None:
        return self._hashes.get(number)

    def drop_from(self, number: int) -> None:
        for key in [k for k in self._hashes if k >= number]:
            del self._hashes[key]


class Follower:
    def __init__(self, ctx: TaskContext, config: FollowerConfig, adapter, engine) -> None:
        from trace_chain.chains import chain_settings

        self.ctx = ctx
        self.config = config
        self.adapter = adapter
        self.engine = engine
        self.window = HashWindow(config.window_blocks)
        hint = chain_settings(config.chain_id).block_time_hint_seconds
        self.poll = config.poll_interval_seconds or max(hint / 4, 0.05)
        self.tip: int | None = None
        self.tip_hash: str | None = None
        self.unemitted_from = config.start_block
        # This follower's own announcement cursor and rewrite-log position (hot_followers).
        # start_block is part of the dataset's definition, so part of the cursor's identity.
        self.key = f"{ctx.org_id}/{ctx.dag_name}/{ctx.job_name}/start={config.start_block}"
        # The lowest block the writer keeps contiguous: its start_block, or lower when the
        # chain's hot rows (written by another follower) already begin below it.
        self.floor = config.start_block
        self.rewrites_seen = 0
        self.prepared = False
        self.epoch: int | None = None  # our writer epoch, once we are the chain's writer
        self._catching_up = True  # until a poll finds nothing new
        self._last_status: tuple | None = None
        self._last_status_at = 0.0
        self._known_head: int | None = None  # the head seen last while catching up
        # The next batch, fetched while this one is written (reads only; see _step).
        self.prefetch = RangePrefetch(self._fetch_range, name=f"follow-{config.chain_id}")

    def _fetch_range(self, start: int, end: int):
        if self.config.traces:
            return self.adapter.block_range_with_receipts(start, end, traces=True)
        return self.adapter.block_range_with_receipts(start, end)

    def close(self) -> None:
        """Stop fetching ahead and end the adapter's request threads."""
        self.prefetch.close()
        close = getattr(self.adapter, "close", None)
        if close is not None:
            close()

    # --- start-up -------------------------------------------------------------------------
    def prepare(self) -> None:
        """What any follower of the chain needs, writer or standby: the right chain, its org
        on record, its own cursor, and the rewrites it has not handled yet."""
        from trace_chain import hot_store

        node_chain = self.adapter.chain_id()
        if node_chain != self.config.chain_id:
            raise PermanentError(
                f"rpc_pool {self.config.rpc_pool!r} serves chain {node_chain}, "
                f"not chain_id {self.config.chain_id}"
            )
        if self.config.traces:
            self._check_traces_supported()
        chain_id = self.config.chain_id
        hot_store.hot_follower_org_register(self.engine, chain_id=chain_id, org_id=self.ctx.org_id)
        cursor = hot_store.follower_get(self.engine, chain_id=chain_id, follower=self.key)
        if cursor is None:  # new: nothing announced, no rewrite of the past concerns us
            self.rewrites_seen = hot_store.hot_rewrites_last(self.engine, chain_id=chain_id)
            # Saved before any announcement, so a crash after the first one still finds the
            # rewrites it must invalidate.
            self._save_cursor()
        else:
            self.rewrites_seen = cursor["rewrites_seen"]
            if cursor["emitted_upto"] is not None:
                self.unemitted_from = max(cursor["emitted_upto"], self.config.start_block)
        self.prepared = True
        self._catch_up_rewrites()

    def _check_traces_supported(self) -> None:
        from trace_chain.adapter import TracesUnsupported

        try:
            self.adapter.traces_check()
        except TracesUnsupported as exc:
            raise PermanentError(f"config.traces: {exc}") from None

    def resume(self) -> None:
        """Become the chain's writer (the caller holds the chain's writer lock): continue from
        the hot tip, and announce what was stored but not yet announced (at least once)."""
        from trace_chain import hot_store

        if not self.prepared:
            self.prepare()
        self.epoch = hot_store.hot_writer_epoch_take(self.engine, chain_id=self.config.chain_id)
        if self.config.reset_outputs:
            self._reset_once()
        self._catch_up_rewrites()  # the previous writer's last ones, if we were on standby
        self.tip = self.tip_hash = None  # whatever standby saw, the hot table decides
        bounds = self._check_announceable()
        self.floor = min(self.config.start_block, bounds[0]) if bounds else self.config.start_block
        tip = hot_store.hot_tip(self.engine, chain_id=self.config.chain_id)
        if tip:
            # The hot rows are the chain's: continue them without a gap, whatever our own
            # start_block (we announce only from it).
            self.tip, self.tip_hash = tip
            start = max(self.floor, tip[0] - self.config.window_blocks + 1)
            for number, block_hash in sorted(
                hot_store.hot_hashes(
                    self.engine, chain_id=self.config.chain_id, start=start, end=tip[0] + 1
                ).items()
            ):
                self.window.add(number, block_hash)
        else:
            self._resume_from_cold()
        self.unemitted_from = max(
            self.config.start_block, min(self.unemitted_from, self.next_block)
        )

    def _check_announceable(self) -> tuple[int, int] | None:
        """The chain's hot bounds; refuses (for good) a follower whose next announcement lies
        below the lowest stored block: nobody will store those blocks again, so announcing
        them would announce rows that do not exist."""
        from trace_chain import hot_store

        bounds = hot_store.hot_bounds(self.engine, chain_id=self.config.chain_id)
        if bounds is not None and self.unemitted_from < bounds[0]:
            if self._cold_covers(self.unemitted_from, bounds[0]):
                return bounds  # compacted: the blocks below the hot rows are in cold
            raise PermanentError(
                f"chain {self.config.chain_id}'s hot rows start at block {bounds[0]}, above "
                f"this follower's next block to announce ({self.unemitted_from}): another "
                f"follower set where the chain's hot rows begin. Use start_block >= "
                f"{bounds[0]}, and chain_sync for older history"
            )
        return bounds

    def _cold_blocks(self) -> list:
        """The chain's live compacted `blocks` segments (trace_chain/compaction.py)."""
        from trace_chain.compaction import cold_tail

        return cold_tail(self.engine, chain_id=self.config.chain_id)

    def _cold_covers(self, start: int, end: int) -> bool:
        from trace_chain.cold_segments import covered_upto

        return covered_upto(self._cold_blocks(), start) >= end

    def _resume_from_cold(self) -> None:
        """No hot rows, but compaction moved the chain's history to cold: continue from cold's
        high-water mark (the end of the contiguous cold run holding our next block), linking to
        its last block's hash, instead of fetching history into the hot tables again."""
        from trace_chain.cold_segments import covered_upto

        segments = self._cold_blocks()
        start = self.floor
        hwm = covered_upto(segments, start)
        if hwm <= start:
            return
        last = next(s for s in segments if s.range_end == hwm)
        self.tip, self.tip_hash = hwm - 1, last.last_block_hash
        self.window.add(self.tip, self.tip_hash)
        log.info("chain %s: resuming from cold's high-water mark %s", self.config.chain_id, hwm)

    def _cold_hashes(self, start: int, end: int) -> dict[int, str]:
        """Stored hashes below the hot rows: the last block of each compacted segment."""
        return {
            s.range_end - 1: s.last_block_hash
            for s in self._cold_blocks()
            if start <= s.range_end - 1 < end
        }

    def _align(self, block: int) -> int:
        """The start of the `emit_every_blocks` announcement that holds `block`, so a
        re-announcement covers the same ranges as the first one."""
        every, base = self.config.emit_every_blocks, self.config.start_block
        return base + ((block - base) // every) * every

    def _catch_up_rewrites(self) -> None:
        """Invalidate, for our own dataset, what we announced of ranges the chain's writer
        (another org's follower, or an earlier attempt of ours) deleted and rewrote since."""
        from trace_chain import hot_store

        for rewrite in hot_store.hot_rewrites_since(
            self.engine, chain_id=self.config.chain_id, after=self.rewrites_seen
        ):
            start = self._align(max(rewrite["range_start"], self.config.start_block))
            if start < self.unemitted_from:
                self.ctx.invalidate(
                    output=0,
                    range_start=start,
                    range_end=self.unemitted_from,
                    reason=f"hot rows of chain {self.config.chain_id} from block {start} "
                    "were rewritten (reorg or reset)",
                )
                self.unemitted_from = start
            self.rewrites_seen = rewrite["id"]

    def _reset_once(self) -> None:
        """reset_outputs bootstrap: wipe this chain's hot rows once per (job, start_block)."""
        from trace_chain import hot_store

        marker = self.key
        status = hot_store.hot_status_get(self.engine, chain_id=self.config.chain_id) or {}
        if status.get("reset_marker") == marker:
            return
        others = set(status.get("follower_org_ids") or []) - {self.ctx.org_id}
        if others:
            # The hot tables hold a chain once for every org that follows it.
            raise PermanentError(
                f"reset_outputs refused: chain {self.config.chain_id}'s hot rows are also "
                f"followed for {len(others)} other org(s), and resetting would delete rows "
                "they rely on; remove reset_outputs from the config"
            )
        log.warning("reset_outputs: deleting hot rows of chain %s", self.config.chain_id)
        tip = hot_store.hot_tip(self.engine, chain_id=self.config.chain_id)
        hot_store.hot_rewrite_from(
            self.engine,
            chain_id=self.config.chain_id,
            start=0,
            end=tip[0] + 1 if tip else 0,
            epoch=self.epoch,
        )
        hot_store.hot_status_update(
            self.engine, chain_id=self.config.chain_id, reset_marker=marker, tip_block=None
        )
        # Our own earlier announcements are invalidated by the rewrite like everyone's.
        self._catch_up_rewrites()

    # --- standby --------------------------------------------------------------------------
    def standby_step(self) -> None:
        """Another follower (e.g. another org's) writes this chain: announce, for our own
        dataset, what it stored, and invalidate what it rewrote. Never touches the rows."""
        if not self.prepared:
            self.prepare()
        self._catch_up_rewrites()
        bounds = self._check_announceable()
        if bounds is not None:  # the writer keeps [low, high] contiguous
            self.tip = bounds[1] if bounds[1] >= self.config.start_block else None
            self._emit_due()
        self._status(None)

    @property
    def next_block(self) -> int:
        return self.floor if self.tip is None else self.tip + 1

    # --- the loop -------------------------------------------------------------------------
    def step(self) -> int:
        """Fetch and store one batch (or handle one reorg); returns blocks written."""
        from trace_chain.adapter import BlockNotFound, RangeChanged

        try:
            return self._step()
        except (RangeChanged, BlockNotFound) as exc:
            # The node moved under us (reorg mid-fetch) or an endpoint lags behind another:
            # nothing was written; try again after a poll interval.
            self.prefetch.discard()
            self._known_head = None  # e.g. the chain became shorter: ask the node again
            log.info("chain %s: %s; retrying", self.config.chain_id, exc)
            return 0
        except BaseException:
            # Whatever failed (RPC, database, lease), the next step starts afresh from the
            # stored tip: nothing fetched before the failure is kept.
            self.prefetch.discard()
            self._known_head = None
            raise

    def _step(self) -> int:
        from trace_chain import hot_store

        # At the tip, one call answers "anything new?" and "is my tip still canonical?"; while
        # catching up, the bare number is enough (a busy chain's head block lists thousands
        # of transaction hashes).
        latest = None if self._catching_up else self.adapter.head()
        start = self.next_block
        if latest is not None:
            head = latest["number"]
        elif self._known_head is not None and self._known_head >= start + self.config.batch_size:
            # A full batch beyond this one is known to exist: no need to ask (the node answers
            # the question only after the batches in flight, which made it most of the wait).
            head = self._known_head
        else:
            head = self.adapter.head_number()
        if head < start and latest is None:  # caught up: look at the head block itself
            latest = self.adapter.head()
            head = latest["number"]
        self._known_head = head
        if head < start:
            self._catching_up = False
            # Nothing new; but a reorg can replace blocks at (or below) our tip without the
            # head moving past it, so check that the node still has what we stored there.
            if self.tip is not None and self._tip_replaced(latest):
                self._handle_reorg(head)
            else:
                self._emit_due()  # e.g. blocks an earlier attempt stored but did not announce
                self._status(head)
            return 0
        end = min(head + 1, start + self.config.batch_size)
        # Fetched ahead during the previous write if that fetch began here, else now. Either
        # way it is checked against the stored tip below before anything is written.
        rows = self.prefetch.take(start, end)
        blocks = rows.blocks
        if self.tip_hash is not None and blocks[0]["parent_hash"] != self.tip_hash:
            self._handle_reorg(head)
            return 0
        # The node may reorg while we fetch: keep only the prefix that links up.
        keep = 1
        while keep < len(blocks) and blocks[keep]["parent_hash"] == blocks[keep - 1]["hash"]:
            keep += 1
        last = blocks[keep - 1]["number"]
        if keep == len(blocks) and last < head:
            # More blocks are known to exist: fetch the next batch while this one is written.
            self.prefetch.fetch_ahead(last + 1, min(head + 1, last + 1 + self.config.batch_size))
        wanted = lambda row: row["block_number"] <= last  # noqa: E731
        # No write once the lease is lost (the heartbeat sets the stop event): a fetch that was
        # in flight when it was lost is dropped with the attempt.
        self.ctx.check_lease()
        hot_store.hot_replace_range(
            self.engine,
            chain_id=self.config.chain_id,
            start=start,
            end=last + 1,
            blocks=blocks[:keep],
            transactions=[t for t in rows.transactions if wanted(t)],
            logs=[entry for entry in rows.logs if wanted(entry)],
            traces=[trace for trace in rows.traces if wanted(trace)],
            epoch=self.epoch,
        )
        self._catching_up = last < head
        for block in blocks[:keep]:
            self.window.add(block["number"], block["hash"])
        self.tip, self.tip_hash = last, blocks[keep - 1]["hash"]
        self._emit_due()
        self._status(head)
        return keep

    def _tip_replaced(self, latest: dict[str, Any]) -> bool:
        """Called when the node's head is at or below our tip: does the node disagree with
        the block we stored at its head's height? A node merely behind us (a lagging
        endpoint) agrees there, and we wait for it."""
        head = latest["number"]
        if head < self.floor:
            return False
        stored = self._stored_hash(head)
        # Compacted blocks keep only their segment's last hash: a node that far behind us
        # is waited for, not taken for a reorg.
        return stored is not None and latest["hash"] != stored

    def _emit_due(self) -> None:
        """Emit one event per full `emit_every_blocks` blocks written since the last one."""
        every = self.config.emit_every_blocks
        while self.tip is not None and self.tip + 1 - self.unemitted_from >= every:
            upto = self.unemitted_from + every
            self.ctx.emit(
                output=0,
                range_start=self.unemitted_from,
                range_end=upto,
                cursor=upto,
                attributes={"chain_id": self.config.chain_id},
            )
            self.unemitted_from = upto

    def _status(self, head: int | None) -> None:
        """Record our cursor and, as the writer (`head` known), the chain's head and tip. An
        idle poll that changed nothing rewrites them (`updated_at` is liveness) at most every
        STATUS_REFRESH_SECONDS."""
        from trace_chain import hot_store

        state = (head, self.tip, self.unemitted_from, self.rewrites_seen)
        now = time.monotonic()
        if state == self._last_status and now - self._last_status_at < STATUS_REFRESH_SECONDS:
            return
        self._last_status, self._last_status_at = state, now
        if head is not None:
            hot_store.hot_status_update(
                self.engine, chain_id=self.config.chain_id, head_block=head, tip_block=self.tip
            )
        self._save_cursor()

    def _save_cursor(self) -> None:
        from trace_chain import hot_store

        hot_store.follower_save(
            self.engine,
            chain_id=self.config.chain_id,
            follower=self.key,
            emitted_upto=self.unemitted_from,
            rewrites_seen=self.rewrites_seen,
        )

    def _handle_reorg(self, head: int) -> None:
        from trace_chain import hot_store

        self.prefetch.discard()  # fetched before the rollback: never written after it
        self._known_head = None
        old_next = self.next_block
        fork = self._fork_point(head)
        first_bad = fork + 1
        depth = old_next - first_bad
        if depth <= 0:  # the node moved under us, nothing we stored differs
            return
        log.warning(
            "chain %s reorg: blocks [%s, %s) orphaned (depth %s)",
            self.config.chain_id,
            first_bad,
            old_next,
            depth,
        )
        # Invalidate first: if we die before the delete, the next attempt finds the same
        # mismatch and invalidates again (harmless); the other order could lose it. Only our
        # own blocks (from start_block), from the start of their announcement.
        ours = self._align(max(first_bad, self.config.start_block))
        if ours < old_next:
            self.ctx.invalidate(
                output=0,
                range_start=ours,
                range_end=old_next,
                reason=f"reorg of depth {depth} on chain {self.config.chain_id}",
            )
        rewrite = hot_store.hot_rewrite_from(
            self.engine,
            chain_id=self.config.chain_id,
            start=first_bad,
            end=old_next,
            epoch=self.epoch,
        )
        self.rewrites_seen = max(self.rewrites_seen, rewrite or 0)  # invalidated just above
        self.window.drop_from(first_bad)
        if fork < self.floor:
            self.tip = self.tip_hash = None
        else:
            self.tip, self.tip_hash = fork, self._stored_hash(fork)
        self.unemitted_from = min(self.unemitted_from, ours)
        hot_store.hot_status_update(
            self.engine,
            chain_id=self.config.chain_id,
            head_block=head,
            tip_block=self.tip,
            reorg_depth=depth,
        )
        self._last_status = None
        self._status(head)

    def _stored_hash(self, number: int) -> str | None:
        from trace_chain import hot_store

        cached = self.window.get(number)
        if cached is not None:
            return cached
        found = hot_store.hot_hashes(
            self.engine, chain_id=self.config.chain_id, start=number, end=number + 1
        )
        if number not in found:
            found = self._cold_hashes(number, number + 1)
        return found.get(number)

    def _fork_point(self, head: int) -> int:
        """Highest stored block whose hash the node still agrees with; walks back in growing
        steps (never above the node's head), reading stored hashes from the hot table and,
        below it, the compacted segments' last hashes."""
        from trace_chain import hot_store

        upper = min(self.next_block, head + 1)  # exclusive
        step = 8
        while upper > self.floor:
            lower = max(self.floor, upper - step)
            canonical = {
                b["number"]: b["hash"]
                for b in self.adapter.blocks(lower, upper, full_transactions=False)
            }
            stored = hot_store.hot_hashes(
                self.engine, chain_id=self.config.chain_id, start=lower, end=upper
            )
            # Below the hot rows (compacted), a reorg deeper than the hot window is found at a
            # cold segment's end: the rewrite then starts at the next segment, which compaction
            # rebuilds from the hot rows written again.
            stored = {**self._cold_hashes(lower, upper), **stored}
            for number in range(upper - 1, lower - 1, -1):
                if stored.get(number) is not None and stored[number] == canonical.get(number):
                    return number
            upper = lower
            step *= 2
        return self.floor - 1


class _RideOut:
    """Waits out transient RPC failures inside the attempt. `RpcUnavailable` means the pool
    already retried every endpoint for several rounds; the node is down, stalled or
    overloaded, which is not this follower's failure, so it backs off (1 s doubling to
    RIDE_OUT_MAX_SECONDS) and tries again rather than failing the attempt. The heartbeat thread
    keeps the lease meanwhile, and `ctx.sleep` ends at once (LeaseLost) if the lease is lost.
    """

    def __init__(self, ctx: TaskContext, chain_id: int) -> None:
        self.ctx = ctx
        self.chain_id = chain_id
        self.delay = 0.0

    def call(self, fn):
        """`fn()`'s result, or RODE_OUT after backing off from a transient RPC failure."""
        from trace_chain.rpc import RpcUnavailable

        try:
            result = fn()
        except RpcUnavailable as exc:
            self.delay = min(self.delay * 2, RIDE_OUT_MAX_SECONDS) if self.delay else 1.0
            log.warning(
                "chain %s: RPC unavailable, retrying in %.0fs within the attempt: %s",
                self.chain_id,
                self.delay,
                exc,
            )
            self.ctx.sleep(self.delay)
            return RODE_OUT
        if self.delay:
            log.info("chain %s: RPC answers again", self.chain_id)
            self.delay = 0.0
        return result

    def until_done(self, fn) -> None:
        while self.call(fn) is RODE_OUT:
            self.ctx.check_lease()


RIDE_OUT_MAX_SECONDS = 15.0
RODE_OUT = object()


def follower_adapter(pool, config: FollowerConfig):
    """The chain adapter a follower reads through (also what the benchmark measures)."""
    from trace_chain.adapter import ChainAdapter

    return ChainAdapter(pool, concurrency=config.fetch_concurrency)


def run(ctx: TaskContext) -> None:
    from trace_chain.db import data_engine
    from trace_chain.hot_store import chain_writer_lock
    from trace_chain.rpc import rpc_pool_from_env

    config = config_parse(ctx.config)
    pool = rpc_pool_from_env(config.rpc_pool)
    engine = data_engine()
    follower = Follower(ctx, config, follower_adapter(pool, config), engine)
    ride_out = _RideOut(ctx, config.chain_id)

    def standby() -> None:
        # Another follower writes the chain: announce its rows for our dataset until we can
        # take over (it stops, or dies and its session ends).
        if ride_out.call(follower.standby_step) is not RODE_OUT:
            ctx.sleep(follower.poll)

    try:
        ride_out.until_done(follower.prepare)
        with chain_writer_lock(engine, chain_id=config.chain_id, wait=standby) as still_held:
            follower.resume()
            while not ctx.should_stop():
                if not still_held():
                    # Our database session (and with it the lock) ended, e.g. Postgres
                    # restarted: a standby may be writing already. Stop; the source monitor
                    # restarts us, as a standby if need be.
                    raise RuntimeError(
                        f"lost the writer lock of chain {config.chain_id}; stopping so that "
                        "no two followers write it"
                    )
                if ride_out.call(follower.step) == 0:
                    ctx.sleep(follower.poll)
    finally:
        follower.close()
        pool.close()
