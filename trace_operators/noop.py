"""noop: does nothing, on purpose — for smoke checks, demos and tests of the orchestration.

Config (all optional): `sleep_seconds` (hold the lease that long, heartbeating), `fail_attempts`
(list of attempt numbers that raise), `fail_permanently` (raise a non-retryable error),
`emit_every_seconds` + `emit_count` (commit output events mid-run, like a source would).
"""

from __future__ import annotations

import time

from trace_operators.context import PermanentError, TaskContext


def run(ctx: TaskContext) -> None:
    config = ctx.config
    if ctx.attempt in config.get("fail_attempts", []):
        raise RuntimeError(f"noop asked to fail on attempt {ctx.attempt}")
    if config.get("fail_permanently"):
        raise PermanentError("noop asked to fail permanently")
    for index in range(int(config.get("emit_count", 0))):
        ctx.sleep(float(config.get("emit_every_seconds", 0)))
        ctx.emit(output=0, cursor=index + 1, partition_key=f"tick-{index + 1}")
    deadline = time.monotonic() + float(config.get("sleep_seconds", 0))
    while (left := deadline - time.monotonic()) > 0:
        ctx.sleep(min(left, 0.5))
