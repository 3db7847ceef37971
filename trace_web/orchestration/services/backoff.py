"""Exponential backoff with full jitter, shared by task retries and the outbox."""

from __future__ import annotations

import random


def backoff_seconds(*, tries: int, base: float, cap: float) -> float:
    """Delay before try number `tries + 1`: uniform in [ceiling / 2, ceiling], ceiling grows 2x
    per try up to `cap`. Half the ceiling is kept so retries never bunch up at zero delay."""
    ceiling = min(cap, base * (2 ** max(tries - 1, 0)))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
