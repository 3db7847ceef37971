"""The operator registry: operator name (as written in DAG YAML) -> function."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from trace_operators.context import PermanentError, TaskContext

Operator = Callable[[TaskContext], Any]

# Module paths, imported on first use so a worker loads only the heavy libraries it needs.
OPERATORS: dict[str, str] = {
    "noop": "trace_operators.noop",
    "cryo_ingest": "trace_operators.cryo_ingest",
    "block_follower": "trace_operators.block_follower",
}


def operator_get(name: str) -> Operator:
    module_path = OPERATORS.get(name)
    if module_path is None:
        raise PermanentError(f"unknown operator {name!r}; known: {', '.join(sorted(OPERATORS))}")
    return importlib.import_module(module_path).run
