"""A circuit breaker for publishing to the broker: after a failed publish, publishing is not
tried again for a pause, so callers do not each wait out a timeout against a broker that is
down. Process-wide and thread-safe; the outbox keeps what was not published."""

from __future__ import annotations

import threading
import time


class Breaker:
    def __init__(self, pause_seconds: float) -> None:
        self.pause_seconds = pause_seconds
        self._lock = threading.Lock()
        self._open_until = 0.0  # monotonic time until which nothing is tried

    def allows(self) -> bool:
        """Closed, or its pause is over (then the next call is the probe)."""
        with self._lock:
            return time.monotonic() >= self._open_until

    def trip(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.pause_seconds

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0
