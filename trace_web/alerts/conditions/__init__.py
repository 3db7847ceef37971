"""The declarative condition language of alerts: one match (a transaction, a log, or a trace:
an internal call) with address, selector or event filters and a `where` expression over the
row and its decoded arguments; parsed strictly, compiled to one gated query, evaluated row by
row.
Importable without Django (operators use it): only `condition_parse` imports trace_web.errors.

The facade the alert_evaluate operator and the API's serializers call (docs/alerts.md,
"Conditions"): `condition_parse`, `condition_sql`, `condition_matches`, `condition_datasets`.
"""

from __future__ import annotations

from typing import Any

from trace_operators.validation import Problems

from .matches import Evaluation, condition_evaluate, condition_rows_matches
from .spec import Condition, condition_build
from .sql import BLOCK_TIME, condition_select

__all__ = [
    "BLOCK_TIME",
    "Condition",
    "Evaluation",
    "condition_datasets",
    "condition_evaluate",
    "condition_matches",
    "condition_parse",
    "condition_sql",
]


def condition_parse(data: Any) -> Condition:
    """The condition in `data` (a decoded JSON or YAML document), checked whole, or
    ValidationFailed listing every problem as `condition.<field>: message`. Nothing else is
    raised, whatever `data` is."""
    from trace_web.errors import ValidationFailed

    try:
        return condition_build(data)
    except Problems as exc:
        raise ValidationFailed.of(exc.errors) from None
    except RecursionError:
        raise ValidationFailed.one("condition", "nested too deeply") from None


def condition_datasets(cond: Condition) -> list[str]:
    """The chain relations the condition reads: its match's (`logs`, `transactions`,
    `traces`) and `blocks`, for the block time."""
    return sorted({cond.dataset, "blocks"})


def condition_sql(cond: Condition, *, chain_id: int, range_start: int, range_end: int) -> str:
    """One SELECT over the condition's relation for blocks `[range_start, range_end)` of
    `chain_id`, its filters pushed down, with every column of the relation plus `block_time`,
    in block order; for the task query API (it passes the gate)."""
    return condition_select(cond, chain_id=chain_id, range_start=range_start, range_end=range_end)


def condition_matches(cond: Condition, columns: list[str], rows: list[list]) -> list[dict]:
    """One dict per matching row: `block_number`, `block_hash`, `tx_hash`, `log_index` (None
    but for a log), `key` (`trace:<trace_address>` for a trace, else None), `block_time`
    (unix seconds or None) and `payload` (the row's columns
    and, under `args`, the decoded arguments, JSON-safe). Rows that do not decode are left
    out and counted in a log line; `condition_evaluate` returns them too."""
    return condition_rows_matches(cond, columns, rows)
