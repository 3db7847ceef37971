"""alert_evaluate: an org's alert definitions over new blocks (live), over a reorged range
(an invalidation) or over a historical range (a backtest), in the `udf` runtime.

Live, it is a reactive PerUpdate job on a follower's dataset: each task reads the blocks after
its cursor, `[after, upto)`; a definition with `confirmations: N` evaluates the same span N
blocks lower, `[after - N, upto - N)`, so it sees a block only once N more are on top of it
and consecutive tasks cover every height once. A new job (cursor 0) starts at the tip: history
is what a backtest is for. An invalidation (a reorg) re-evaluates from its start up to the tip (less
each definition's confirmations), so a match the reorg moved to a later block is seen as
moved, not dropped. A backtest (a manual task with payload
`{"backtest": true, "definitions": [...], "deliver": bool}`) evaluates its range for those
definitions.

A declarative condition (trace_web.alerts.conditions) is compiled to one gated query per span
through the task query API and decoded here; a UDF handler runs in the sandbox with
`ctx.range` the span and `ctx.params` the definition's params, returning event rows. The
matches are buffer-published, with the spans evaluated and the block hashes they were read
at, and the sink (trace_web.alerts.sink) turns them into events when the output commits.

Config: `chain_id`, and `alerts` (definition names; omitted: every enabled definition of the
org on that chain).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from trace_operators.context import (
    ConfigError,
    PermanentError,
    TaskApiRefused,
    TaskContext,
)
from trace_operators.validation import StrictModel, validate

RUNTIMES = ("udf",)
PINS_BUNDLE = False  # each definition names its own handler bundle

# A span is queried in pieces of at most this many blocks; a piece whose answer is truncated
# (over the inline row cap) is halved until it fits.
QUERY_BLOCKS = 2_000


class AlertEvaluateConfig(StrictModel):
    chain_id: Annotated[int, Field(ge=0)]
    alerts: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=1000)]
        | None
    ) = None


def config_parse(config: dict[str, Any]) -> AlertEvaluateConfig:
    return validate(AlertEvaluateConfig, config, prefix="config", error=ConfigError)


def output_committed(task, partition) -> None:
    from trace_web.alerts.sink import sink_enqueue

    sink_enqueue(task=task, partition=partition)


def _definitions(ctx: TaskContext, config: AlertEvaluateConfig, backtest: bool) -> list:
    from trace_web.alerts.models import AlertDefinition

    definitions = AlertDefinition.objects.filter(org_id=ctx.org_id, chain_id=config.chain_id)
    if config.alerts is not None:
        definitions = definitions.filter(name__in=config.alerts)
    if backtest:
        wanted = ctx.scope.payload.get("definitions")
        if not isinstance(wanted, list):
            raise PermanentError("a backtest names its definitions (payload.definitions)")
        definitions = definitions.filter(pk__in=[d for d in wanted if isinstance(d, int)])
    else:
        definitions = definitions.filter(enabled=True)
    return list(definitions.select_related("bundle").order_by("pk"))


def spans(
    ctx: TaskContext, definitions: list, backtest: bool, tip: int | None = None
) -> list[tuple[Any, int, int]]:
    """`(definition, start, end)` to evaluate, end-exclusive, empty spans left out. `tip`:
    the chain's highest block as the task reads it (needed for an invalidation)."""
    scope = ctx.scope
    out = []
    if isinstance(scope.cursor, dict) and scope.range_start is None:
        after, upto = scope.cursor.get("after") or 0, scope.cursor.get("upto")
        if not isinstance(upto, int):
            return []
        if after == 0:
            after = max(0, upto - 1)  # a new job starts at the tip
        for definition in definitions:
            n = definition.confirmations
            out.append((definition, max(0, after - n), max(0, upto - n)))
    elif scope.range_start is not None and scope.range_end is not None:
        for definition in definitions:
            end = scope.range_end
            if not backtest:
                # A reorg: from the fork up to the tip (less the confirmations), whatever the
                # live tasks reached, so a match the reorg moved to a later block is found in
                # the same pass as the old one is dropped (then it is a move, not a retraction).
                end = (tip if tip is not None else end - 1) + 1 - definition.confirmations
            out.append((definition, scope.range_start, end))
    else:
        raise PermanentError("alert_evaluate needs a cursor (live) or a block range")
    return [(d, s, e) for d, s, e in out if e > s]


def _query(ctx: TaskContext, sql: str, what: str) -> dict[str, Any]:
    try:
        return ctx.task_api.query(sql)
    except TaskApiRefused as exc:
        raise PermanentError(f"{what}: the query was refused ({exc.code}): {exc.message}") from None


def _condition_rows(ctx, definition, start: int, end: int) -> list[dict[str, Any]]:
    from trace_web.alerts import conditions

    cond = conditions.condition_parse(definition.condition)
    matches: list[dict[str, Any]] = []
    pieces = [(s, min(s + QUERY_BLOCKS, end)) for s in range(start, end, QUERY_BLOCKS)]
    while pieces:
        s, e = pieces.pop(0)
        sql = conditions.condition_sql(
            cond, chain_id=definition.chain_id, range_start=s, range_end=e
        )
        answer = _query(ctx, sql, f"alert {definition.name!r}")
        if answer.get("truncated"):
            if e - s == 1:
                raise PermanentError(
                    f"alert {definition.name!r}: block {s} alone has more candidate rows than "
                    "one query may return; narrow the condition"
                )
            middle = (s + e) // 2
            pieces[:0] = [(s, middle), (middle, e)]
            continue
        matches += conditions.condition_matches(cond, answer["columns"], answer["rows"])
    return [
        {
            "definition": definition.pk,
            "chain_id": definition.chain_id,
            "block_number": m["block_number"],
            "block_hash": m["block_hash"],
            "tx_hash": m.get("tx_hash"),
            "log_index": m.get("log_index"),
            "key": m.get("key"),
            "block_time": m.get("block_time"),
            "payload": m.get("payload") or {},
        }
        for m in matches
    ]


def _handler_rows(ctx, definition, start: int, end: int) -> list[Any]:
    """A UDF definition's rows: each handler row, with the definition and chain it is for
    set here whatever the handler said (it says which block, transaction and log; the sink
    checks every field)."""
    from trace_operators.udf import handler_run

    result, _ = handler_run(
        ctx,
        params=definition.params or {},
        limits={},
        block_range=(start, end),
        bundle_sha256=definition.bundle.sha256,
        entrypoint=definition.entrypoint,
    )
    return [
        {**row, "definition": definition.pk, "chain_id": definition.chain_id}
        if isinstance(row, dict)
        else row
        for row in result.rows
    ]


def _hashes(chain_id: int, heights: list[tuple[int, int]]) -> dict[str, str]:
    """The hot block hashes of the spans as they are now (number -> hash), read from the hot
    tables by this trusted code (public chain data, no grant needed; a query through the gate
    would cost a DuckDB start each). Heights below the hot range are cold and final."""
    from trace_chain import hot_store
    from trace_chain.db import data_engine

    seen: dict[str, str] = {}
    for start, end in heights:
        found = hot_store.hot_hashes(data_engine(), chain_id=chain_id, start=start, end=end)
        seen.update({str(number): block_hash for number, block_hash in found.items()})
    return seen


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def run(ctx: TaskContext) -> dict[str, Any]:
    from trace_operators.udf import batches_location, rows_publish

    config = config_parse(ctx.config)
    if ctx.task_api is None:
        raise PermanentError("alert_evaluate runs only in the udf runtime of a worker")
    backtest = ctx.scope.payload.get("backtest") is True
    definitions = _definitions(ctx, config, backtest)
    tip = None
    if ctx.scope.range_start is not None and not backtest:
        from trace_chain import hot_store
        from trace_chain.db import data_engine

        top = hot_store.hot_tip(data_engine(), chain_id=config.chain_id)
        tip = top[0] if top else None
    todo = spans(ctx, definitions, backtest, tip)
    # The hashes are read before and after: a reorg in between would leave the rows read
    # against a chain that is gone, so the attempt fails and is retried.
    heights = [] if backtest else _merged([(s, e) for _, s, e in todo])
    before = _hashes(config.chain_id, heights)
    rows: list[Any] = []
    for definition, start, end in todo:
        ctx.check_lease()
        if definition.bundle_id is not None:
            rows += _handler_rows(ctx, definition, start, end)
        else:
            rows += _condition_rows(ctx, definition, start, end)
    if _hashes(config.chain_id, heights) != before:
        raise RuntimeError("the chain was reorganized while the alerts were evaluated; retrying")
    pointers = rows_publish(ctx, rows)
    scope = ctx.scope
    ctx.outputs = [
        {
            "output": 0,
            "partition_key": scope.partition_key or f"task-{ctx.task_id}",
            "range_start": scope.range_start,
            "range_end": scope.range_end,
            "publication": {
                "location": batches_location(pointers),
                "row_count": sum(p["row_count"] for p in pointers),
                "bytes": sum(p["bytes"] for p in pointers),
                "manifest": {
                    "format": "jsonl",
                    "batches": pointers,
                    "evaluated": [[d.pk, s, e] for d, s, e in todo],
                    "seen": before,
                },
            },
        }
    ]
    return {
        "definitions": len(definitions),
        "spans": len(todo),
        "matches": len(rows),
    }
