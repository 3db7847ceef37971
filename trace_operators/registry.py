"""The operator registry: operator name (as written in DAG YAML) -> its module.

An operator module defines `run(ctx)`, and may define:
- `config_parse(config)`: validate a job config (a `StrictModel` through
  `trace_operators.validation.validate`), raising `ConfigError` with every problem, each naming
  its field. DAG sync calls it, so a bad config is refused at deploy time, not on the first run.
- `content_config(config)`: the part of the config that decides what the output holds (the
  dataset version's definition). Without it the whole config counts.
- `output_prefixes(config, range_start, range_end)`: object-store prefixes (relative to the
  store root) a task of the job may publish under. Without it a job gets its own
  `orgs/{org_id}/{dag}/{job}/`.
- `RUNTIMES`: the runtimes it may run in (e.g. only `platform` for trusted code that writes
  shared data). Without it, any.
- `output_committed(task, partition)`: called in the transaction that commits a publication
  of the job (a PartitionVersion), for a side effect that must happen exactly when it does
  (alert_evaluate: the sink's outbox row).
- `PINS_BUNDLE = False`: a udf-runtime operator whose user code does not come from the job's
  `udf:` bundle (alert_evaluate: each alert definition names its own), so the job needs none.
- `warm_up()`: pay the operator's per-process fixed costs (heavy imports) once, when a worker
  process starts, instead of in its first task.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from trace_operators.context import ConfigError, PermanentError, TaskContext
from trace_operators.validation import Problem

Operator = Callable[[TaskContext], Any]

# Module paths, imported on first use so a worker loads only the heavy libraries it needs.
OPERATORS: dict[str, str] = {
    "noop": "trace_operators.noop",
    "cryo_ingest": "trace_operators.cryo_ingest",
    "block_follower": "trace_operators.block_follower",
    "duckdb_query": "trace_operators.duckdb_query",
    "parquet_compact": "trace_operators.parquet_compact",
    "udf": "trace_operators.udf",
    "alert_evaluate": "trace_operators.alert_evaluate",
    "iceberg_sync": "trace_operators.iceberg_sync",
    "integrity_check": "trace_operators.integrity_check",
}


class UnknownOperator(PermanentError):
    pass


def _module(name: str) -> ModuleType:
    module_path = OPERATORS.get(name)
    if module_path is None:
        raise UnknownOperator(f"unknown operator {name!r}; known: {', '.join(sorted(OPERATORS))}")
    return importlib.import_module(module_path)


def operator_get(name: str) -> Operator:
    return _module(name).run


def operator_config_problems(name: str, config: Any, runtime: str | None) -> list[Problem]:
    """`(field path, message)` for what is wrong with a job's operator, runtime and config
    (empty when nothing is). Paths are relative to the job: `operator`, `runtime`, `config`,
    `config.<field>`. `runtime` None: not known (itself invalid), so not checked."""
    try:
        module = _module(name)
    except UnknownOperator as exc:
        return [("operator", str(exc))]
    problems = []
    if runtime is not None and not operator_runtime_allowed(name, runtime):
        problems.append(("runtime", f"operator {name!r} runs only in {list(module.RUNTIMES)}"))
    parse = getattr(module, "config_parse", None)
    if parse is not None and isinstance(config, dict):
        try:
            parse(config)
        except ConfigError as exc:
            problems += exc.problems
    return problems


def operator_content_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """What of `config` decides the output's content (see the module docstring)."""
    content = getattr(_module(name), "content_config", None)
    return config if content is None else content(config)


def operator_runtime_allowed(name: str, runtime: str) -> bool:
    runtimes = getattr(_module(name), "RUNTIMES", None)
    return runtimes is None or runtime in runtimes


def operator_output_prefixes(
    name: str, config: dict[str, Any], range_start: int | None, range_end: int | None
) -> list[str] | None:
    """Where a task of the operator publishes (see the module docstring); None: the platform
    default."""
    prefixes = getattr(_module(name), "output_prefixes", None)
    return None if prefixes is None else prefixes(config, range_start, range_end)


def operator_pins_bundle(name: Any) -> bool:
    """Whether a udf-runtime job of the operator needs a `udf:` bundle (see the docstring);
    an unknown operator is reported on its own field, so here it needs one."""
    try:
        return getattr(_module(name), "PINS_BUNDLE", True)
    except (UnknownOperator, TypeError):
        return True


def operator_output_committed(name: str, task: Any, partition: Any) -> None:
    """The operator's hook on a committed publication, if it has one (see the docstring)."""
    hook = getattr(_module(name), "output_committed", None)
    if hook is not None:
        hook(task, partition)


def operators_warm_up(names: list[str]) -> None:
    """Run the `warm_up` of each named operator that has one (a worker process starting)."""
    for name in names:
        warm_up = getattr(_module(name), "warm_up", None)
        if warm_up is not None:
            warm_up()
