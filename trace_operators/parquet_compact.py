"""parquet_compact: moves a chain's finalized hot ranges into cold Parquet
(trace_chain/compaction.py), committing each partition through the fenced task API before its
hot rows go.

Reactive, PerPartition on a `block_follower`'s output: every announced range wakes it, and each
run compacts everything final that is not in cold yet (a lost wake-up delays, never loses).
Config: `chain_id`; `finality_depth_blocks` (default: the chain's, trace_chain/chains.py);
`hot_window_blocks` (256): the newest blocks that stay hot; `chunk_blocks` (50): partitions are
cut at multiples of it; `row_group_size` (100,000); `merge_target_rows` (1,000,000) and
`merge_target_bytes` (256 MiB): small partitions are merged up to either; `max_chunks_per_run`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from trace_operators.context import ConfigError, TaskContext
from trace_operators.validation import BIGINT_MAX, INT_MAX, ChainId, StrictModel, validate

DEFAULT_HOT_WINDOW_BLOCKS = 256
STAGING_SUBDIR = "parquet_compact"
LOCK_WAIT_SECONDS = 0.2

Blocks = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Positive = Annotated[int, Field(ge=1, le=INT_MAX)]


class CompactConfig(StrictModel):
    chain_id: ChainId
    finality_depth_blocks: Blocks | None = None
    hot_window_blocks: Blocks = DEFAULT_HOT_WINDOW_BLOCKS
    chunk_blocks: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    row_group_size: Positive = 100_000
    merge_target_rows: Annotated[int, Field(ge=1, le=BIGINT_MAX)] = 1_000_000
    merge_target_bytes: Annotated[int, Field(ge=1, le=BIGINT_MAX)] = 256 * 1024**2
    max_chunks_per_run: Annotated[int, Field(ge=1, le=100_000)] = 200


# Trusted code: it writes shared cold partitions and deletes shared hot rows.
RUNTIMES = ("platform",)


def config_parse(config: dict[str, Any]) -> CompactConfig:
    return validate(CompactConfig, dict(config), prefix="config", error=ConfigError)


def content_config(config: dict[str, Any]) -> dict[str, Any]:
    """What the partitions hold and how their files are cut; not when they are written
    (finality, hot window, batch limits)."""
    parsed = config_parse(config)
    return parsed.model_dump(
        include={
            "chain_id",
            "chunk_blocks",
            "row_group_size",
            "merge_target_rows",
            "merge_target_bytes",
        }
    )


def output_prefixes(
    config: dict[str, Any], range_start: int | None, range_end: int | None
) -> list[str]:
    """The chain's compaction version prefixes, one per dataset: chain data is the same for
    every org, so it is content-addressed at the store root like Cryo's."""
    from trace_chain.chains import chain_settings
    from trace_chain.compaction import version_prefixes

    parsed = config_parse(config)
    return version_prefixes(
        chain_id=parsed.chain_id,
        chain=chain_settings(parsed.chain_id).name,
        row_group_rows=parsed.row_group_size,
    )


def policy_of(config: CompactConfig):
    from trace_chain.chains import chain_settings
    from trace_chain.compaction import Policy

    depth = config.finality_depth_blocks
    if depth is None:
        depth = chain_settings(config.chain_id).finality_depth_blocks
    return Policy(
        finality_depth_blocks=depth,
        hot_window_blocks=config.hot_window_blocks,
        chunk_blocks=config.chunk_blocks,
        row_group_rows=config.row_group_size,
        merge_target_rows=config.merge_target_rows,
        merge_target_bytes=config.merge_target_bytes,
        max_chunks_per_run=config.max_chunks_per_run,
    )


def publication(item) -> dict[str, Any]:
    """One committed partition as the output event that records it in partition_versions."""
    partition, manifest = item.partition, item.published.manifest
    return {
        "output": 0,
        "partition_key": partition.partition_key,
        "range_start": partition.range_start,
        "range_end": partition.range_end,
        "attributes": {
            "chain_id": partition.chain_id,
            "dataset": item.dataset,
            "compaction": item.kind,
        },
        "publication": {
            "location": item.published.location,
            "row_count": manifest["row_count"],
            "bytes": manifest["bytes"],
            "config_hash": partition.config_hash,
            "schema_hash": manifest["schema_hash"],
            "manifest": manifest,
        },
    }


def run(ctx: TaskContext, *, stage=None):
    import shutil

    from trace_chain import compaction
    from trace_chain.chains import chain_settings
    from trace_chain.db import data_engine
    from trace_chain.object_store import object_store_from_env
    from trace_operators.cryo_ingest import staging_clean_stale, staging_create, staging_root

    config = config_parse(ctx.config)
    engine = data_engine()
    store = object_store_from_env()
    root = staging_root().parent / STAGING_SUBDIR
    staging_clean_stale(root, task_id=ctx.task_id, attempt=ctx.attempt)
    staging = staging_create(root, task_id=ctx.task_id, attempt=ctx.attempt)
    try:
        with compaction.compaction_lock(
            engine, chain_id=config.chain_id, wait=lambda: ctx.sleep(LOCK_WAIT_SECONDS)
        ):
            outcome = compaction.compact_chain(
                engine=engine,
                store=store,
                chain_id=config.chain_id,
                chain=chain_settings(config.chain_id).name,
                policy=policy_of(config),
                staging=staging,
                commit=lambda item: ctx.emit(**publication(item)),
                invalidate=lambda start, end, reason: ctx.invalidate(
                    output=0, range_start=start, range_end=end, reason=reason
                ),
                check=ctx.check_lease,
                stage=stage or (lambda name: None),
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.outputs = []  # every partition was committed as it was written
    return outcome
