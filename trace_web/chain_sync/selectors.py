"""Reads for chain_sync: per-stream progress (cursor, in flight, done, errors, rate, ETA)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from trace_web.chain_sync.models import ChainSync, RangeStatus
from trace_web.errors import NotFound

RATE_WINDOW = timedelta(minutes=2)


def chain_sync_get(*, org_id: int, name: str) -> ChainSync:
    sync = ChainSync.objects.filter(org_id=org_id, name=name).first()
    if sync is None:
        raise NotFound(f"no chain_sync named {name!r}")
    return sync


def chain_sync_status(*, sync: ChainSync) -> list[dict]:
    now = timezone.now()
    rows = []
    for stream in sync.streams.order_by("dataset"):
        blocks = Coalesce(Sum("range_end") - Sum("range_start"), 0)
        stats = stream.ranges.aggregate(
            inflight=Count("id", filter=Q(status=RangeStatus.SCHEDULED)),
            done=Count("id", filter=Q(status=RangeStatus.DONE)),
            errors=Count("id", filter=Q(status=RangeStatus.FAILED)),
            first=Min("range_start"),
            done_upto=Max("range_end", filter=Q(status=RangeStatus.DONE)),
        )
        done_blocks = stream.ranges.filter(status=RangeStatus.DONE).aggregate(b=blocks)["b"]
        recent = stream.ranges.filter(status=RangeStatus.DONE, finished_at__gte=now - RATE_WINDOW)
        recent_blocks = recent.aggregate(b=blocks)["b"]
        rate = recent_blocks / RATE_WINDOW.total_seconds() if recent_blocks else 0.0
        target = sync.to_block if sync.mode == "fixed_target" else None
        total = (target - sync.from_block) if target is not None else None
        remaining = (total - done_blocks) if total is not None else None
        rows.append(
            {
                "dataset": stream.dataset,
                "cursor": stream.cursor,
                "target": target if target is not None else sync.head_block,
                "inflight": stats["inflight"],
                "done_ranges": stats["done"],
                "done_blocks": done_blocks,
                "total_blocks": total,
                "errors": stats["errors"],
                "blocks_per_second": rate,
                "eta_seconds": (remaining / rate) if rate and remaining else None,
                "complete": total is not None and done_blocks >= total,
            }
        )
    return rows
