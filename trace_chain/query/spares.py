"""Primed spare databases for the sandbox: a new in-memory DuckDB with its extensions loaded
and the hot Postgres attached, its catalog read once, made in the background after a query so
that the next query does not wait for it. Each spare is handed out once and closed with its
query, so every query still gets a database of its own; nothing of any user's is in a spare
(no views, no files allowed yet, no secret, no transaction open), and the hardening that
follows (trusted code's views, limits, allowed paths, the lock and its check) is the same
as on a database opened on the spot.

One spare per kind (which extension files, which Postgres source) per process, kept for at
most `TRACE_QUERY_SPARE_SECONDS` (default 30; 0 turns spares off). The Postgres scanner
reconnects a session that has gone and looks up again a table its cached catalog does not
know (tests/query/test_spares.py). A forked child never uses its parent's spares: their
Postgres sockets belong to the parent.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_AGE_SECONDS = 30.0


def max_age_seconds() -> float:
    raw = os.environ.get("TRACE_QUERY_SPARE_SECONDS", "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_MAX_AGE_SECONDS
    except ValueError:
        return DEFAULT_MAX_AGE_SECONDS


@dataclass
class _Spare:
    connection: Any
    made_at: float


@dataclass
class SparePool:
    """Spares by key, made by `refill` in a daemon thread, taken by `take`."""

    _ready: dict[Any, _Spare] = field(default_factory=dict)
    _making: dict[Any, int] = field(default_factory=dict)  # key -> generation being made
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _made: threading.Condition = field(init=False)
    taken: int = 0  # spares handed out (for tests and the benchmark)
    _generation: int = 0  # bumped by clear(): spares still being made then are dropped

    def __post_init__(self) -> None:
        self._made = threading.Condition(self._lock)

    def take(self, key: Any) -> Any | None:
        """The ready spare for `key` if one is fresh enough, else None."""
        limit = max_age_seconds()
        with self._lock:
            spare = self._ready.pop(key, None)
            if spare is not None and time.monotonic() - spare.made_at <= limit:
                self.taken += 1
                return spare.connection
        if spare is not None:
            _close_quietly(spare.connection)
        return None

    def refill(self, key: Any, make: Callable[[], Any]) -> None:
        """Start making a spare for `key` unless one is ready or being made."""
        if max_age_seconds() <= 0:
            return
        with self._lock:
            generation = self._generation
            if key in self._ready or self._making.get(key) == generation:
                return
            self._making[key] = generation
        pid = os.getpid()
        threading.Thread(
            target=self._make,
            args=(key, make, pid, generation),
            name="trace-query-spare",
            daemon=True,
        ).start()

    def _make(self, key: Any, make: Callable[[], Any], pid: int, generation: int) -> None:
        connection = None
        try:
            connection = make()
        except Exception:  # the query that takes no spare opens its own and reports the fault
            connection = None
        with self._lock:
            if self._making.get(key) == generation:
                del self._making[key]
            current = os.getpid() == pid and generation == self._generation
            if connection is not None and current and key not in self._ready:
                self._ready[key] = _Spare(connection, time.monotonic())
                connection = None
            self._made.notify_all()
        if connection is not None:
            _close_quietly(connection)

    def wait_ready(self, key: Any, timeout: float) -> bool:
        """Whether a spare for `key` is ready within `timeout` seconds (for tests)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while key not in self._ready:
                left = deadline - time.monotonic()
                if left <= 0 or self._making.get(key) != self._generation:
                    return key in self._ready
                self._made.wait(left)
            return True

    def clear(self) -> None:
        with self._lock:
            spares = list(self._ready.values())
            self._ready.clear()
            self._generation += 1
        for spare in spares:
            _close_quietly(spare.connection)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's spares without closing them (closing would end
        the parent's Postgres sessions through the shared sockets), and keep them referenced
        so that no garbage collection closes them either."""
        _INHERITED.extend(spare.connection for spare in self._ready.values())
        self._ready.clear()
        self._making.clear()
        self._lock = threading.Lock()
        self._made = threading.Condition(self._lock)


def _close_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):  # a spare that cannot even close is simply dropped
        connection.close()


_INHERITED: list[Any] = []
POOL = SparePool()
os.register_at_fork(after_in_child=POOL.forget_after_fork)
