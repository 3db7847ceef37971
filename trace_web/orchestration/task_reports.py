"""What a task runtime reports to the control plane — outputs to commit, events mid-run
(outputs or invalidations), a failure — as typed, bounded models. Runtimes are untrusted: the
task API validates these at its edge and the task services validate them again for in-process
callers, so a wrong type, an unknown field or a value no column can hold is a 400 naming the
field (`events[2].cursor: must be <= ...`), never a crash, a database error or a poisoned row.
Pure Python (pydantic): the checks that need the job (output index, publication prefixes) are
in services.commits."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, StringConstraints, Tag

from trace_operators.validation import (
    BlockNumber,
    Count,
    Problem,
    StrictModel,
    as_dict,
    as_int,
    as_list,
    validate,
)

PARTITION_KEY_MAX = 200  # PartitionVersion.partition_key
HASH_MAX = 64  # PartitionVersion.config_hash / schema_hash
ERROR_MAX_CHARS = 10_000
MAX_EVENTS = 1000

PartitionKey = Annotated[str, StringConstraints(min_length=1, max_length=PARTITION_KEY_MAX)]
OutputIndex = Annotated[int, Field(ge=0, le=15, description="Index of the job's output")]
Hash = Annotated[str, StringConstraints(max_length=HASH_MAX)]


class Publication(StrictModel):
    """Where a committed partition's data lies."""

    location: Annotated[
        str,
        StringConstraints(max_length=2000),
        Field(description="Must lie under the object-store prefixes of the job's token"),
    ] = ""
    row_count: Count | None = None
    bytes: Count | None = None
    config_hash: Hash = ""
    schema_hash: Hash = ""
    manifest: dict[str, Any] | None = None


class OutputItem(StrictModel):
    """One output to commit (now, as an event, or at completion)."""

    type: Literal["output"] = "output"
    output: OutputIndex = 0
    partition_key: PartitionKey | None = Field(
        None, description="Default with a range: `{range_start}_{range_end}`"
    )
    range_start: BlockNumber | None = None
    range_end: BlockNumber | None = Field(None, description="End-exclusive; set with range_start")
    cursor: Count | None = Field(
        None, description="The producer's position after this output (e.g. the next block)"
    )
    attributes: dict[str, Any] | None = None
    publication: Publication | None = None


class InvalidationItem(StrictModel):
    """Part of one of the task's outputs was wrong (e.g. a reorged block range): every
    dependent job reprocesses it."""

    type: Literal["invalidation"]
    output: OutputIndex = 0
    partition_key: PartitionKey | None = None
    range_start: BlockNumber | None = None
    range_end: BlockNumber | None = None
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""


def _event_kind(value: Any) -> str | None:
    """The union member an event is checked against; a non-object is checked as an output, so
    it is refused as "must be a mapping"."""
    if isinstance(value, OutputItem | InvalidationItem):
        kind = value.type
    else:
        kind = value.get("type", "output") if isinstance(value, dict) else "output"
    return {"output": "<OutputItem>", "invalidation": "<InvalidationItem>"}.get(kind)


EventItem = Annotated[
    Annotated[OutputItem, Tag("<OutputItem>")]
    | Annotated[InvalidationItem, Tag("<InvalidationItem>")],
    Discriminator(
        _event_kind,
        custom_error_type="event_type",
        custom_error_message="type must be 'output' (the default) or 'invalidation'",
    ),
]


class CompleteBody(StrictModel):
    outputs: Annotated[list[OutputItem], Field(max_length=MAX_EVENTS)] | None = Field(
        None,
        description="Omitted or null: each of the job's outputs once, with the task's own scope",
    )


class EventsBody(StrictModel):
    events: Annotated[list[EventItem], Field(min_length=1, max_length=MAX_EVENTS)]


class FailBody(StrictModel):
    error: Annotated[str, StringConstraints(min_length=1, max_length=ERROR_MAX_CHARS)]
    retryable: bool = True


def _range_rules(items: list[Any], field: str) -> list[Problem]:
    problems: list[Problem] = []
    for index, item in enumerate(items):
        item = as_dict(item)
        start, end = as_int(item.get("range_start")), as_int(item.get("range_end"))
        if (item.get("range_start") is None) != (item.get("range_end") is None):
            problems.append((f"{field}[{index}]", "range_start and range_end go together"))
        elif start is not None and end is not None and end <= start:
            problems.append((f"{field}[{index}].range_end", "must be above range_start"))
        elif item.get("type") == "invalidation" and start is None and not item.get("partition_key"):
            problems.append((f"{field}[{index}]", "an invalidation needs a range or a partition"))
    return problems


def _as_raw(items: list[Any]) -> list[Any]:
    return [i.model_dump() if isinstance(i, StrictModel) else i for i in items]


def complete_body_parse(data: Any) -> CompleteBody:
    """Raises trace_operators.validation.Problems listing every problem."""
    return validate(
        CompleteBody,
        data,
        rules=lambda raw: _range_rules(_as_raw(as_list(raw.get("outputs"))), "outputs"),
    )


def events_body_parse(data: Any) -> EventsBody:
    return validate(
        EventsBody,
        data,
        rules=lambda raw: _range_rules(_as_raw(as_list(raw.get("events"))), "events"),
    )


def fail_body_parse(data: Any) -> FailBody:
    return validate(FailBody, data)
