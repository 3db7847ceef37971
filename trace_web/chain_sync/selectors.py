"""Reads for chain_sync: the block the planner plans up to, and per-stream progress (cursor,
in flight, done, errors, the measured completion rate and the ETA it gives)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from trace_web.chain_sync.models import ChainSync, ChainSyncStream, RangeStatus
from trace_web.errors import NotFound

# The rate is measured over the ranges completed in this window (at most RATE_SAMPLE of the
# newest): recent enough to follow a change of speed, long enough to span several ranges.
RATE_WINDOW = timedelta(minutes=10)
RATE_SAMPLE = 50


def chain_sync_get(*, org_id: int, name: str) -> ChainSync:
    sync = ChainSync.objects.filter(org_id=org_id, name=name).first()
    if sync is None:
        raise NotFound(f"no chain_sync named {name!r}")
    return sync


def chain_sync_tail_lag(*, sync: ChainSync) -> int:
    """follow_head stays this many blocks behind the head: `tail_lag`, else the chain's
    finality depth."""
    if sync.tail_lag is not None:
        return sync.tail_lag
    from trace_chain.chains import chain_settings

    return chain_settings(sync.chain_id).finality_depth_blocks


def chain_sync_plan_target(*, sync: ChainSync, head: int | None = None) -> int | None:
    """The end-exclusive block the planner plans up to: `to_block` (fixed_target), or
    `head - tail_lag + 1` for follow_head (the last observed head unless `head` is given;
    None before any head was observed)."""
    if sync.mode == "fixed_target":
        return sync.to_block
    head = sync.head_block if head is None else head
    if head is None:
        return None
    return max(head - chain_sync_tail_lag(sync=sync) + 1, sync.from_block)


def completion_rate(
    *, stream: ChainSyncStream, now: datetime | None = None, in_flight: bool = False
) -> float:
    """Blocks per second, measured: the blocks of the newest ranges completed within
    RATE_WINDOW over the time from the first of them being scheduled to the last completing
    (to now while ranges are still in flight, so a stalled sync slows down, not freezes, its
    rate). 0.0 when no range completed in the window."""
    now = now or timezone.now()
    recent = list(
        stream.ranges.filter(status=RangeStatus.DONE, finished_at__gte=now - RATE_WINDOW)
        .order_by("-finished_at")
        .values_list("range_start", "range_end", "created_at", "finished_at")[:RATE_SAMPLE]
    )
    if not recent:
        return 0.0
    blocks = sum(end - start for start, end, _, _ in recent)
    began = min(created for _, _, created, _ in recent)
    ended = now if in_flight else recent[0][3]
    seconds = (ended - began).total_seconds()
    return blocks / seconds if seconds > 0 else 0.0


def chain_sync_status(*, sync: ChainSync, now: datetime | None = None) -> list[dict]:
    """One row per stream; `now` (default: the clock) is the instant the rate is measured at."""
    now = now or timezone.now()
    target = chain_sync_plan_target(sync=sync)
    rows = []
    for stream in sync.streams.order_by("dataset"):
        stats = stream.ranges.aggregate(
            inflight=Count("id", filter=Q(status=RangeStatus.SCHEDULED)),
            done=Count("id", filter=Q(status=RangeStatus.DONE)),
            errors=Count("id", filter=Q(status=RangeStatus.FAILED)),
        )
        done_blocks = stream.ranges.filter(status=RangeStatus.DONE).aggregate(
            b=Coalesce(Sum("range_end") - Sum("range_start"), 0)
        )["b"]
        rate = completion_rate(stream=stream, now=now, in_flight=stats["inflight"] > 0)
        total = (sync.to_block - sync.from_block) if sync.mode == "fixed_target" else None
        remaining = max(target - sync.from_block - done_blocks, 0) if target is not None else None
        if remaining == 0:
            eta = 0.0
        elif remaining is not None and rate:
            eta = remaining / rate
        else:
            eta = None
        rows.append(
            {
                "dataset": stream.dataset,
                "cursor": stream.cursor,
                "target": sync.to_block if sync.mode == "fixed_target" else sync.head_block,
                "plan_target": target,
                "inflight": stats["inflight"],
                "done_ranges": stats["done"],
                "done_blocks": done_blocks,
                "total_blocks": total,
                "remaining_blocks": remaining,
                "errors": stats["errors"],
                "blocks_per_second": rate,
                "eta_seconds": eta,
                "complete": total is not None and done_blocks >= total,
            }
        )
    return rows


def chain_sync_summary(*, sync: ChainSync) -> dict:
    """One line per sync for listings: its streams' progress added up; the ETA is the slowest
    stream's (null if any stream has none)."""
    streams = chain_sync_status(sync=sync)
    etas = [row["eta_seconds"] for row in streams]
    return {
        "name": sync.name,
        "chain_id": sync.chain_id,
        "mode": sync.mode,
        "enabled": sync.enabled,
        "from_block": sync.from_block,
        "to_block": sync.to_block,
        "head_block": sync.head_block,
        "plan_target": chain_sync_plan_target(sync=sync),
        "streams": len(streams),
        "inflight": sum(row["inflight"] for row in streams),
        "done_blocks": sum(row["done_blocks"] for row in streams),
        "errors": sum(row["errors"] for row in streams),
        "eta_seconds": max(etas) if etas and None not in etas else None,
        "complete": bool(streams) and all(row["complete"] for row in streams),
        "updated_at": sync.updated_at,
    }
