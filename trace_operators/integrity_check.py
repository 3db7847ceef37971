"""integrity_check: checks a chain's committed cold data against the node
(trace_chain/integrity.py): its compacted partitions (`source: compacted`, the default) or the
org's committed Cryo backfill partitions its queries read (`source: backfill`); rebuilds
damaged partitions under a new revision (trace_chain/integrity_repair.py) and commits the
result, which the control plane records as an IntegrityCheck row with its invalidations
(trace_web/datasets/integrity.py).

Runs from a cron source (or reactive, or by hand): the range is the task's scope if it has
one, else the newest `last_blocks` finalized cold blocks of the source (all of it without it).
Config: `chain_id`; `source`; `rpc_pool` or `rpc_url`; `finality_depth_blocks` (the chain's);
`last_blocks`; `sample` (a fraction of blocks compared with the node; checksums always);
`seed`; `repair` (true: rebuild under a new revision); `row_group_size` (100,000, the
compaction job's); `alert_channel`; `max_details` (20).
See docs/integrity.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from trace_operators.context import ConfigError, PermanentError, TaskContext
from trace_operators.validation import (
    BIGINT_MAX,
    INT_MAX,
    ChainId,
    PoolName,
    StrictModel,
    validate,
)

log = logging.getLogger(__name__)

STAGING_SUBDIR = "integrity_check"
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)]
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
COMPACTED, BACKFILL = "compacted", "backfill"


class IntegrityConfig(StrictModel):
    chain_id: ChainId
    # compacted: the chain's live `cold_segments`; backfill: the org's committed cryo_ingest
    # partitions of the chain that its queries read.
    source: Literal["compacted", "backfill"] = COMPACTED
    rpc_pool: PoolName | None = None
    rpc_url: HttpUrl | None = None
    finality_depth_blocks: Annotated[int, Field(ge=0, le=BIGINT_MAX)] | None = None
    last_blocks: Annotated[int, Field(ge=1, le=BIGINT_MAX)] | None = None
    sample: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=BIGINT_MAX)] | None = None
    repair: bool = True
    row_group_size: Annotated[int, Field(ge=1, le=INT_MAX)] = 100_000
    alert_channel: ChannelName | None = None
    max_details: Annotated[int, Field(ge=1, le=1000)] = 20


# Trusted code: it reads shared cold partitions and rebuilds them.
RUNTIMES = ("platform",)


def _rules(raw: dict[str, Any]) -> list[tuple[str, str]]:
    if (raw.get("rpc_pool") is None) == (raw.get("rpc_url") is None):
        return [("", "set exactly one of rpc_pool (a pool name) or rpc_url")]
    return []


def config_parse(config: dict[str, Any]) -> IntegrityConfig:
    return validate(IntegrityConfig, dict(config), rules=_rules, prefix="config", error=ConfigError)


def output_prefixes(
    config: dict[str, Any], range_start: int | None, range_end: int | None
) -> list[str]:
    """A repair publishes where compaction does (a new revision of the same range), or for a
    backfill inside the damaged partition's prefix, under any content config of the chain's
    datasets (the backfill jobs' configs are theirs, not this job's)."""
    from trace_chain.chain_schema import DATASETS
    from trace_chain.chains import chain_settings
    from trace_chain.compaction import version_prefixes

    parsed = config_parse(config)
    if parsed.source == BACKFILL:
        return [f"{parsed.chain_id}/{dataset}/" for dataset in DATASETS]
    return version_prefixes(
        chain_id=parsed.chain_id,
        chain=chain_settings(parsed.chain_id).name,
        row_group_rows=parsed.row_group_size,
    )


def output_committed(task, partition) -> None:
    """A check result is recorded (with its invalidations) exactly when it is committed; so is
    a rebuilt backfill partition, in the backfill's own dataset."""
    from trace_chain.integrity_repair import BACKFILL_KEY_PREFIX
    from trace_web.datasets.integrity import (
        RESULT_KEY_PREFIX,
        backfill_repair_record,
        integrity_check_record,
    )

    if partition.partition_key.startswith(RESULT_KEY_PREFIX):
        integrity_check_record(task=task, partition=partition)
    elif partition.partition_key.startswith(BACKFILL_KEY_PREFIX):
        backfill_repair_record(task=task, partition=partition)


def _pool(config: IntegrityConfig):
    from trace_chain.rpc import RpcPool, rpc_pool_from_env

    if config.rpc_url is not None:
        return RpcPool("integrity_check", [config.rpc_url], timeout=30.0, max_retries=2)
    return rpc_pool_from_env(config.rpc_pool or "")


def _partitions(ctx: TaskContext, config: IntegrityConfig, engine) -> list[Any]:
    """What the check reads: the chain's live compacted segments or its backfill partitions."""
    from trace_chain.integrity import compacted_partitions

    if config.source == COMPACTED:
        return compacted_partitions(engine, config.chain_id)
    if ctx.backfill_partitions is None:
        raise PermanentError(
            "integrity_check of backfill partitions runs only in the platform runtime"
        )
    return ctx.backfill_partitions(config.chain_id)


def _range(ctx: TaskContext, config: IntegrityConfig, partitions, head: int, depth: int):
    """The task's scope, else the newest `last_blocks` finalized blocks of the source."""
    if ctx.scope.range_start is not None:
        return ctx.scope.range_start, ctx.scope.range_end
    if config.last_blocks is None:
        return None, None
    ends = [
        p.range_end for p in partitions if p.dataset == "blocks" and p.range_end <= head - depth + 1
    ]
    if not ends:
        return None, None
    end = max(ends)
    return max(0, end - config.last_blocks), end


def run(ctx: TaskContext):
    import shutil

    from trace_chain.adapter import ChainAdapter
    from trace_chain.chains import chain_settings
    from trace_chain.db import data_engine
    from trace_chain.integrity import integrity_check
    from trace_chain.object_store import object_store_from_env
    from trace_operators.cryo_ingest import staging_clean_stale, staging_create, staging_root

    config = config_parse(ctx.config)
    settings = chain_settings(config.chain_id)
    depth = config.finality_depth_blocks
    if depth is None:
        depth = settings.finality_depth_blocks
    engine = data_engine()
    store = object_store_from_env()
    started = datetime.now(UTC)
    seed = config.seed if config.seed is not None else ctx.task_id
    repaired: list[list[Any]] = []
    with _pool(config) as pool:
        adapter = ChainAdapter(pool)
        try:
            partitions = _partitions(ctx, config, engine)
            start, end = _range(ctx, config, partitions, adapter.head_number(), depth)
            report = integrity_check(
                engine=engine,
                store=store,
                adapter=adapter,
                chain_id=config.chain_id,
                range_start=start,
                range_end=end,
                finality_depth_blocks=depth,
                sample=config.sample,
                seed=seed,
                heartbeat=ctx.check_lease,
                partitions=partitions,
            )
            affected = report.affected()
            if affected and config.repair:
                root = staging_root().parent / STAGING_SUBDIR
                staging_clean_stale(root, task_id=ctx.task_id, attempt=ctx.attempt)
                staging = staging_create(root, task_id=ctx.task_id, attempt=ctx.attempt)
                rebuild = _repair_compacted if config.source == COMPACTED else _repair_backfill
                try:
                    for dataset, p_start, p_end, location in rebuild(
                        ctx, config, engine, store, adapter, affected, partitions, staging
                    ):
                        repaired.append([dataset, p_start, p_end, location])
                        ctx.invalidate(
                            output=0,
                            range_start=p_start,
                            range_end=p_end,
                            reason=f"integrity: {dataset} rebuilt",
                        )
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        finally:
            adapter.close()
    result = result_of(
        report,
        repaired=repaired,
        source=config.source,
        seed=seed,
        alert_channel=config.alert_channel,
        max_details=config.max_details,
        started=started,
    )
    if affected:
        log.warning(
            "integrity chain %s [%s, %s): %s mismatches (%s) in %s; alert channel %s",
            config.chain_id,
            report.range_start,
            report.range_end,
            len(report.mismatches),
            ", ".join(result["kinds"]),
            affected,
            config.alert_channel or "(none configured)",
        )
    event: dict[str, Any] = {
        "output": 0,
        "partition_key": f"checks/{ctx.task_id}",
        "attributes": {"chain_id": config.chain_id, "integrity": result["status"]},
        "publication": {"location": "", "row_count": result["mismatches"], "manifest": result},
    }
    if report.range_end > report.range_start:
        event.update(range_start=report.range_start, range_end=report.range_end)
    ctx.emit(**event)
    ctx.outputs = []  # everything was committed as it happened
    return result


def _repair_compacted(ctx, config, engine, store, adapter, affected, partitions, staging):
    """Each damaged compacted range rebuilt and recorded as the live segment."""
    from trace_chain.chains import chain_settings
    from trace_chain.integrity_repair import ranges_repair
    from trace_operators.parquet_compact import publication

    for item in ranges_repair(
        engine=engine,
        store=store,
        adapter=adapter,
        chain_id=config.chain_id,
        chain=chain_settings(config.chain_id).name,
        affected=affected,
        row_group_rows=config.row_group_size,
        staging=staging,
        commit=lambda item: ctx.emit(**publication(item)),
        check=ctx.check_lease,
    ):
        p = item.partition
        yield item.dataset, p.range_start, p.range_end, item.published.location


def _repair_backfill(ctx, config, engine, store, adapter, affected, partitions, staging):
    """Each damaged backfill partition rebuilt under a revision of its own prefix and
    committed; the control plane records it in the backfill's dataset (`output_committed`)."""
    from trace_chain.integrity_repair import BACKFILL_KEY_PREFIX, backfill_repair

    held = {(p.dataset, p.range_start, p.range_end): p for p in partitions}
    for dataset, start, end in affected:
        partition = held.get((dataset, start, end))
        if partition is None or not (partition.manifest or {}).get("schema_version"):
            # A gap has no config or file list to rebuild as; a layout-1 partition (Cryo's own
            # columns) would be rebuilt in the one schema under an identity saying otherwise.
            log.warning("integrity: backfill %s [%s, %s) not rebuilt", dataset, start, end)
            continue
        target, published = backfill_repair(
            store=store,
            adapter=adapter,
            chain_id=config.chain_id,
            partition=partition,
            staging=staging,
            check=ctx.check_lease,
        )
        manifest = published.manifest
        ctx.emit(
            output=0,
            partition_key=BACKFILL_KEY_PREFIX + target.partition_key,
            range_start=start,
            range_end=end,
            attributes={"chain_id": config.chain_id, "dataset": dataset, "integrity": "rebuilt"},
            publication={
                "location": published.location,
                "row_count": manifest["row_count"],
                "bytes": manifest["bytes"],
                "config_hash": target.config_hash,
                "schema_hash": manifest["schema_hash"],
                "manifest": manifest,
            },
        )
        yield dataset, start, end, published.location


def result_of(
    report, *, repaired, seed, alert_channel, max_details, started: datetime, source=COMPACTED
) -> dict[str, Any]:
    """The committed result (the IntegrityCheck row's fields), plain JSON."""
    from trace_chain.integrity import kinds_of

    affected = [list(a) for a in report.affected()]
    status = "clean" if not affected else ("repaired" if repaired else "mismatch")
    return {
        "chain_id": report.chain_id,
        "source": source,
        "range_start": report.range_start,
        "range_end": report.range_end,
        "blocks_checked": report.blocks_checked,
        "partitions_checked": report.partitions_checked,
        "sample": report.sample,
        "seed": seed,
        "mismatches": len(report.mismatches),
        "kinds": kinds_of(report.mismatches),
        "details": report.details(max_details),
        "affected": affected,
        "repaired": repaired,
        "status": status,
        "alert_channel": alert_channel,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
    }
