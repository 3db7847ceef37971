"""The `kind: chain_sync` document: "sync chain C from block A (to B, or following the head)
for these datasets", validated as strictly as a DAG (the same mechanism: structure by the
models, rules over the raw document, every error at once naming its field path)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import Field

from trace_operators.validation import (
    BIGINT_MAX,
    BlockNumber,
    PoolName,
    Problem,
    Problems,
    StrictModel,
    as_int,
    as_list,
    validate,
)
from trace_web.orchestration.dag_spec import NAME_RE, DagSpecError, load_strict_yaml

Dataset = Literal["blocks", "transactions", "logs", "traces"]


class StreamSpec(StrictModel):
    dataset: Dataset
    chunk_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    max_inflight: Annotated[int, Field(ge=1, le=1000)] = 4
    rpc_pool: PoolName


class ChainSyncSpec(StrictModel):
    kind: Literal["chain_sync"]
    name: Annotated[str, Field(pattern=NAME_RE)]
    chain_id: Annotated[int, Field(ge=1, le=BIGINT_MAX)]
    mode: Literal["fixed_target", "follow_head"]
    from_block: BlockNumber = 0
    to_block: Annotated[int, Field(ge=1, le=BIGINT_MAX)] | None = None  # end-exclusive
    tail_lag: Annotated[int, Field(ge=0, le=1_000_000)] | None = None  # default: finality depth
    stale_head_seconds: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 120.0
    enabled: bool = True
    streams: Annotated[list[StreamSpec], Field(min_length=1, max_length=4)]

    def content_hash(self) -> str:
        data = self.model_dump(mode="json")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _rules(raw: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    to_block, from_block = as_int(raw.get("to_block")), as_int(raw.get("from_block", 0))
    if raw.get("mode") == "fixed_target":
        if raw.get("to_block") is None:
            problems.append(("to_block", "required when mode is 'fixed_target'"))
        elif to_block is not None and from_block is not None and to_block <= from_block:
            problems.append(("to_block", "must be above from_block (the range is end-exclusive)"))
        if raw.get("tail_lag") is not None:
            problems.append(("tail_lag", "only for mode 'follow_head'"))
    elif raw.get("mode") == "follow_head" and raw.get("to_block") is not None:
        problems.append(("to_block", "not allowed when mode is 'follow_head'"))
    datasets = [
        s.get("dataset") if isinstance(s, dict) else None for s in as_list(raw.get("streams"))
    ]
    for index, dataset in enumerate(datasets):
        if isinstance(dataset, str) and dataset in datasets[:index]:
            problems.append((f"streams[{index}].dataset", f"{dataset!r} listed twice"))
    return problems


def parse_chain_sync_yaml(text: str) -> ChainSyncSpec:
    data = load_strict_yaml(text)
    if not isinstance(data, dict):
        raise DagSpecError(["yaml: document must be a mapping"])
    try:
        return validate(ChainSyncSpec, data, rules=_rules)
    except Problems as exc:
        name = data.get("name") if isinstance(data.get("name"), str) else None
        raise DagSpecError(exc.errors, name) from exc
