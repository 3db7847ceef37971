"""iceberg_sync: keeps the org's Iceberg tables of one chain (one per dataset) holding exactly
the committed cold files its queries read (trace_chain/iceberg.py), for external engines.

Reactive on the commits of the datasets that write cold partitions (a `parquet_compact` job,
`cryo_ingest` backfills), PerUpdate with `max_concurrency: 1`: each run compares what is
committed now with each table and commits the difference in one Iceberg snapshot, so a lost
wake-up delays the tables and loses nothing, and a run that dies is finished by the next.
Config: `chain_id`; `datasets` (default all four: blocks, transactions, logs, traces).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from trace_operators.context import ConfigError, PermanentError, TaskContext
from trace_operators.validation import ChainId, StrictModel, validate

LOCK_WAIT_SECONDS = 0.2

ChainDataset = Annotated[str, Field(pattern=r"^(blocks|transactions|logs|traces)$")]


class IcebergSyncConfig(StrictModel):
    chain_id: ChainId
    datasets: Annotated[list[ChainDataset], Field(min_length=1, max_length=4)] = [
        "blocks",
        "transactions",
        "logs",
        "traces",
    ]


# Trusted: it reads every committed partition of the org and writes the shared catalog.
RUNTIMES = ("platform",)


def _unique(raw: dict[str, Any]):
    datasets = raw.get("datasets")
    if isinstance(datasets, list) and len(set(map(str, datasets))) != len(datasets):
        yield "datasets", "each dataset at most once"


def config_parse(config: dict[str, Any]) -> IcebergSyncConfig:
    return validate(
        IcebergSyncConfig, dict(config), rules=_unique, prefix="config", error=ConfigError
    )


def run(ctx: TaskContext) -> dict[str, Any]:
    from trace_chain import iceberg
    from trace_chain.db import data_engine

    config = config_parse(ctx.config)
    if ctx.cold_catalog is None:
        raise PermanentError("iceberg_sync runs only in the platform runtime")
    try:
        settings = iceberg.iceberg_settings_from_env()
    except iceberg.IcebergConfigError as exc:
        raise PermanentError(str(exc)) from None
    results = iceberg.chain_sync(
        catalog=ctx.cold_catalog,
        engine=data_engine(),
        org_id=ctx.org_id,
        chain_id=config.chain_id,
        datasets=config.datasets,
        settings=settings,
        check=ctx.check_lease,
        wait=lambda: ctx.sleep(LOCK_WAIT_SECONDS),
    )
    ctx.outputs = []
    return {result.dataset: result.summary() for result in results}
