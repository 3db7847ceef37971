"""The declarative condition language of alerts: one match (a transaction or a log) with
address, selector or event filters and a `where` expression over the row and its decoded
arguments; parsed strictly, compiled to one gated query, evaluated row by row.
Importable without Django (operators use it): only `condition_parse` imports trace_web.errors.

The facade the alert_evaluate operator and the API's serializers call (docs/alerts.md,
"Conditions"): `condition_parse`, `condition_sql`, `condition_matches`, `condition_datasets`.
"""

from __future__ import annotations

from typing import Any

from trace_operators.validation import Problems

from .spec import Condition, condition_build

__all__ = ["Condition", "condition_datasets", "condition_parse"]


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
    """The chain relations the condition reads: its match's (`logs`, `transactions`) and
    `blocks`, for the block time."""
    return sorted({cond.dataset, "blocks"})
