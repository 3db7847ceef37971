"""The `kind: chain_sync` document: "sync chain C from block A (to B, or following the head)
for these datasets", validated as strictly as a DAG, errors naming the field path."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trace_web.orchestration.dag_spec import (
    NAME_RE,
    DagSpecError,
    format_validation_errors,
    load_strict_yaml,
)

Dataset = Literal["blocks", "transactions", "logs"]
PoolName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StreamSpec(_Model):
    dataset: Dataset
    chunk_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    max_inflight: Annotated[int, Field(ge=1, le=1000)] = 4
    rpc_pool: PoolName


class ChainSyncSpec(_Model):
    kind: Literal["chain_sync"]
    name: Annotated[str, Field(pattern=NAME_RE)]
    chain_id: Annotated[int, Field(ge=1)]
    mode: Literal["fixed_target", "follow_head"]
    from_block: Annotated[int, Field(ge=0)] = 0
    to_block: Annotated[int, Field(ge=1)] | None = None  # end-exclusive
    tail_lag: Annotated[int, Field(ge=0)] | None = None  # default: the chain's finality depth
    stale_head_seconds: Annotated[float, Field(gt=0)] = 120.0
    enabled: bool = True
    streams: Annotated[list[StreamSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _mode_fields(self) -> ChainSyncSpec:
        if self.mode == "fixed_target":
            if self.to_block is None:
                raise ValueError("to_block: required when mode is 'fixed_target'")
            if self.to_block <= self.from_block:
                raise ValueError("to_block: must be above from_block (the range is end-exclusive)")
            if self.tail_lag is not None:
                raise ValueError("tail_lag: only for mode 'follow_head'")
        elif self.to_block is not None:
            raise ValueError("to_block: not allowed when mode is 'follow_head'")
        datasets = [s.dataset for s in self.streams]
        for index, dataset in enumerate(datasets):
            if dataset in datasets[:index]:
                raise ValueError(f"streams[{index}].dataset: {dataset!r} listed twice")
        return self

    def content_hash(self) -> str:
        data = self.model_dump(mode="json")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_chain_sync_yaml(text: str) -> ChainSyncSpec:
    data = load_strict_yaml(text)
    if not isinstance(data, dict):
        raise DagSpecError(["yaml: document must be a mapping"])
    try:
        return ChainSyncSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for line in format_validation_errors(exc):
            # Rules raised by the model validator carry their own field path.
            head, _, rest = line.partition(": ")
            errors.append(rest.removeprefix("Value error, ") if head == "dag" else line)
        raise DagSpecError(errors, data.get("name")) from exc
