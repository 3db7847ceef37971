"""The alert sink: an alert evaluation's published batches become alert events, once.

When an `alert_evaluate` attempt's output commits, `sink_enqueue` writes, in the same
transaction, an outbox row holding the trusted record of the publication: the org, task,
attempt and job (from the task row), the batch pointers (recorded by buffer-publish), the
evaluated block windows (from the committed manifest, checked against the job's definitions)
and the backtest flags (from the task's payload, set by the API). `publication_sink` then
reads the batches and either applies them whole or refuses them whole:

- every row is validated strictly against the event schema (`EventRow`: unknown fields
  refused); one bad row sends the attempt's publication to the dead-letter queue
  (`DeadLetterBatch`) and writes nothing;
- a row for a block the hot tables no longer hold at that height (the evaluation read a chain
  a reorg has since replaced) is stale: skipped, never made active;
- events are upserted by `dedupe_key` (definition, chain, block hash, transaction, log, the
  handler's key): the same batch twice is one row per key;
- an active event of an evaluated window that the new evaluation did not find is retracted
  (the reorg dropped it);
- new events and retractions are routed to their channels (trace_web.alerts.route).

Org and producer come from the record, never from the rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from django.db import transaction
from django.utils import timezone
from pydantic import Field, StringConstraints, ValidationError

from trace_operators.validation import StrictModel, format_errors, problem_line
from trace_web.alerts.models import (
    AlertDefinition,
    AlertEvent,
    DeadLetterBatch,
    DeadLetterStatus,
    EventState,
)
from trace_web.errors import ValidationFailed

log = logging.getLogger(__name__)

Hash = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{64}$")]
PAYLOAD_MAX_BYTES = 16 * 1024


class EventRow(StrictModel):
    """One published alert-event row: what an evaluation found."""

    definition: Annotated[int, Field(ge=1)]
    chain_id: Annotated[int, Field(ge=0)]
    block_number: Annotated[int, Field(ge=0)]
    block_hash: Hash
    tx_hash: Hash | None = None
    log_index: Annotated[int, Field(ge=0)] | None = None
    block_time: Annotated[int, Field(ge=0, le=2**40)] | None = None
    # A handler's own discriminator, for several matches of one transaction or log.
    key: Annotated[str, StringConstraints(max_length=200)] | None = None
    payload: dict[str, Any] = {}


class BatchRefused(Exception):
    """The publication breaks the event schema or its record: dead-lettered whole."""


@dataclass
class SinkOutcome:
    created: int = 0
    existing: int = 0
    stale: int = 0
    retracted: int = 0
    deliveries: int = 0
    dead_lettered: bool = False
    events: list[AlertEvent] = field(default_factory=list)


def event_keys(row: EventRow, *, backtest_task: int | None = None) -> tuple[str, str]:
    """`(dedupe_key, match_key)` of a row. The dedupe key names the block by its hash, so a
    match re-included in another block after a reorg is another event; the match key leaves
    the block out (definition, chain, transaction, log, key), so that move is not notified
    twice. A match without a transaction is identified by its height. A backtest's events are
    its own (keyed by its task), apart from live ones."""
    where = row.tx_hash or f"block:{row.block_number}"
    match = f"{row.definition}|{row.chain_id}|{where}|{row.log_index}|{row.key or ''}"
    dedupe = f"{match}|{row.block_hash}"
    if backtest_task is not None:
        dedupe = f"backtest:{backtest_task}|{dedupe}"
        match = f"backtest:{backtest_task}|{match}"
    return _digest(dedupe), _digest(match)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sink_enqueue(*, task, partition) -> None:
    """In the commit's transaction: the outbox row that sinks this attempt's publication."""
    from trace_web.orchestration.models import OutboxKind
    from trace_web.orchestration.services.outbox import outbox_add
    from trace_web.udf.models import OutputBatch

    batches = OutputBatch.objects.filter(task_id=task.pk, attempt=task.attempt, output=0)
    payload = task.payload or {}
    record = {
        "org_id": task.org_id,
        "task_id": task.pk,
        "attempt": task.attempt,
        "dag": task.job.dag_version.name,
        "job": task.job.name,
        "chain_id": (task.job.config or {}).get("chain_id"),
        "alerts": (task.job.config or {}).get("alerts"),
        "backtest": payload.get("backtest") is True,
        "deliver": payload.get("deliver") is True,
        "definitions": payload.get("definitions"),
        "evaluated": (partition.manifest or {}).get("evaluated") or [],
        "seen": (partition.manifest or {}).get("seen") or {},
        "batches": [
            {"location": b.location, "sha256": b.sha256, "row_count": b.row_count}
            for b in batches.order_by("sequence")
        ],
    }
    outbox_add(kind=OutboxKind.ALERT_SINK, payload=record)


def publication_sink(*, record: dict[str, Any]) -> SinkOutcome:
    """Apply one attempt's publication (see the module docstring). A store that cannot be
    read raises (the outbox retries); a publication that breaks the schema is dead-lettered
    and returns `dead_lettered`."""
    rows = _rows_read(record, verify=True)
    with transaction.atomic():
        if DeadLetterBatch.objects.filter(
            task_id=record["task_id"], attempt=record["attempt"]
        ).exists():
            return SinkOutcome(dead_lettered=True)  # refused before: only a replay applies it
        try:
            return _apply(record, rows)
        except BatchRefused as exc:
            DeadLetterBatch.objects.create(
                org_id=record["org_id"],
                task_id=record["task_id"],
                attempt=record["attempt"],
                record=record,
                error=str(exc)[:4000],
            )
            log.warning(
                "alert batch of task %s.%s dead-lettered: %s",
                record["task_id"],
                record["attempt"],
                exc,
            )
            return SinkOutcome(dead_lettered=True)


def dead_letter_replay(*, dead_letter: DeadLetterBatch) -> SinkOutcome:
    """Apply a dead-lettered publication again, as its batches now read (after a repair: a
    rewritten batch, a definition restored). Still invalid: ValidationFailed naming the row,
    and it stays in the queue with the new reason."""
    if dead_letter.status != DeadLetterStatus.PENDING:
        raise ValidationFailed.one("status", f"dead letter {dead_letter.pk} was already replayed")
    record = dead_letter.record
    rows = _rows_read(record, verify=False)
    with transaction.atomic():
        locked = DeadLetterBatch.objects.select_for_update().get(pk=dead_letter.pk)
        if locked.status != DeadLetterStatus.PENDING:
            raise ValidationFailed.one("status", f"dead letter {locked.pk} was already replayed")
        refused: BatchRefused | None = None
        try:
            with transaction.atomic():
                outcome = _apply(record, rows)
        except BatchRefused as exc:
            refused = exc
            locked.error = str(exc)[:4000]
            locked.save(update_fields=["error"])
        else:
            locked.status = DeadLetterStatus.REPLAYED
            locked.replayed_at = timezone.now()
            locked.save(update_fields=["status", "replayed_at"])
    # Raised once the new reason is committed: raised inside the block it was rolled back.
    if refused is not None:
        raise ValidationFailed.one("batch", f"still refused: {refused}")
    dead_letter.refresh_from_db()
    return outcome


def _rows_read(record: dict[str, Any], *, verify: bool) -> list[tuple[str, int, Any]]:
    """`(batch location, line number, parsed JSON or the line's error)` of every row."""
    from django.conf import settings

    from trace_chain.object_store import object_store_from_url

    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    root = store.uri()
    root = root if root.endswith("/") else root + "/"
    rows: list[tuple[str, int, Any]] = []
    for batch in record["batches"]:
        location = batch["location"]
        if not location.startswith(root):
            rows.append((location, 0, BatchRefused("the batch is outside the object store")))
            continue
        data = store.get_bytes(location[len(root) :])
        if verify and hashlib.sha256(data).hexdigest() != batch["sha256"]:
            rows.append((location, 0, BatchRefused("its bytes differ from what was published")))
            continue
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                rows.append((location, number, json.loads(line)))
            except ValueError as exc:
                rows.append((location, number, BatchRefused(f"not JSON ({exc})")))
    return rows


def _validated(record: dict[str, Any], rows) -> tuple[list[EventRow], dict[int, AlertDefinition]]:
    definitions = _definitions(record)
    events: list[EventRow] = []
    for location, number, row in rows:
        where = f"{location.rsplit('/', 1)[-1]} line {number}"
        if isinstance(row, BatchRefused):
            raise BatchRefused(f"{where}: {row}")
        try:
            event = EventRow.model_validate(row)
        except ValidationError as exc:
            lines = [problem_line(path, message) for path, message in format_errors(exc, "")]
            raise BatchRefused(f"{where}: {'; '.join(lines)}") from None
        definition = definitions.get(event.definition)
        if definition is None:
            raise BatchRefused(
                f"{where}: definition {event.definition} is not one this job evaluates"
            )
        if event.chain_id != definition.chain_id:
            raise BatchRefused(
                f"{where}: chain_id {event.chain_id} is not definition "
                f"{definition.name!r}'s chain {definition.chain_id}"
            )
        if len(json.dumps(event.payload, separators=(",", ":"))) > PAYLOAD_MAX_BYTES:
            raise BatchRefused(f"{where}: payload over {PAYLOAD_MAX_BYTES} bytes")
        events.append(event)
    return events, definitions


def _definitions(record: dict[str, Any]) -> dict[int, AlertDefinition]:
    """The definitions the publishing job may write events for: the org's, of the job's
    chain, named by the job's config (all when it names none), and for a backtest only the
    ones it asked for."""
    definitions = AlertDefinition.objects.filter(
        org_id=record["org_id"], chain_id=record["chain_id"]
    )
    if record.get("alerts") is not None:
        definitions = definitions.filter(name__in=record["alerts"])
    if record.get("backtest"):
        definitions = definitions.filter(pk__in=record.get("definitions") or [])
    return {d.pk: d for d in definitions.prefetch_related("channels")}


def _windows(record: dict[str, Any], definitions) -> list[tuple[AlertDefinition, int, int]]:
    windows = []
    for item in record.get("evaluated") or []:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
            and 0 <= item[1] <= item[2]
        ):
            raise BatchRefused(f"evaluated window {item!r} is not [definition, start, end]")
        definition = definitions.get(item[0])
        if definition is None:
            raise BatchRefused(f"evaluated window of definition {item[0]} it may not evaluate")
        windows.append((definition, item[1], item[2]))
    return windows


def _canonical(chain_id: int, numbers: list[int]) -> dict[int, str]:
    """The hot tables' block hash at each of `numbers` (heights below the hot range are
    cold, final, and absent from the answer)."""
    from trace_chain import hot_store
    from trace_chain.db import data_engine

    if not numbers:
        return {}
    found = hot_store.hot_hashes(
        data_engine(), chain_id=chain_id, start=min(numbers), end=max(numbers) + 1
    )
    return {n: h for n, h in found.items() if n in set(numbers)}


def _seen(record: dict[str, Any]) -> dict[int, str]:
    """The block hashes the evaluation read its windows at (number -> hash)."""
    seen = record.get("seen") or {}
    problem = BatchRefused("seen is not a map of block numbers to block hashes")
    if not isinstance(seen, dict):
        raise problem
    out: dict[int, str] = {}
    for number, block_hash in seen.items():
        if not (isinstance(number, str) and number.isdigit()):
            raise problem
        if not (isinstance(block_hash, str) and _HASH.fullmatch(block_hash)):
            raise problem
        out[int(number)] = block_hash
    return out


_HASH = re.compile(r"0x[0-9a-f]{64}")


def _apply(record: dict[str, Any], rows) -> SinkOutcome:
    from trace_web.alerts.route import event_route, retraction_route

    events, definitions = _validated(record, rows)
    windows = _windows(record, definitions)
    backtest_task = record["task_id"] if record.get("backtest") else None
    deliver = backtest_task is None or record.get("deliver") is True
    seen = _seen(record)
    canonical = _canonical(record["chain_id"], sorted({e.block_number for e in events} | set(seen)))
    outcome = SinkOutcome()
    found: set[str] = set()
    for row in events:
        stored = canonical.get(row.block_number)
        if stored is not None and stored != row.block_hash:
            outcome.stale += 1  # read before a reorg replaced its block: never made active
            continue
        dedupe_key, match_key = event_keys(row, backtest_task=backtest_task)
        found.add(dedupe_key)
        event, created = AlertEvent.objects.get_or_create(
            org_id=record["org_id"],
            dedupe_key=dedupe_key,
            defaults={
                "definition_id": row.definition,
                "match_key": match_key,
                "chain_id": row.chain_id,
                "block_number": row.block_number,
                "block_hash": row.block_hash,
                "tx_hash": row.tx_hash or "",
                "log_index": row.log_index,
                "event_time": None
                if row.block_time is None
                else datetime.fromtimestamp(row.block_time, tz=UTC),
                "payload": row.payload,
                "producer_task_id": record["task_id"],
                "producer_attempt": record["attempt"],
                "backtest": backtest_task is not None,
            },
        )
        if created:
            outcome.created += 1
            outcome.events.append(event)
            if deliver:
                outcome.deliveries += len(event_route(event, definitions[row.definition]))
            continue
        outcome.existing += 1
        if event.state == EventState.RETRACTED:  # re-included in the very same block
            event.state, event.retracted_at = EventState.ACTIVE, None
            event.save(update_fields=["state", "retracted_at"])
    if backtest_task is not None:
        return outcome
    # Retract what the evaluation no longer finds, only at heights it read as the chain still
    # is: an evaluation that read a block a reorg has since replaced says nothing about it.
    trusted = [n for n, h in seen.items() if canonical.get(n, h) == h]
    for definition, start, end in windows:
        heights = [n for n in trusted if start <= n < end]
        if not heights:
            continue
        dropped = (
            AlertEvent.objects.select_for_update()
            .filter(
                org_id=record["org_id"],
                definition=definition,
                backtest=False,
                state=EventState.ACTIVE,
                block_number__in=heights,
            )
            .exclude(dedupe_key__in=found)
            .order_by("pk")
        )
        for event in dropped:
            event.state, event.retracted_at = EventState.RETRACTED, timezone.now()
            event.save(update_fields=["state", "retracted_at"])
            outcome.retracted += 1
            outcome.deliveries += len(retraction_route(event, definition))
    return outcome
