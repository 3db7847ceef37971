"""Fetching the next block range while the current one is written: one range at a time in a
background thread, handed out only to a caller that asks for the range starting where it began.

It only reads. The caller still checks what it takes (parent hashes) and decides what is
written; a fetch ahead that no longer fits (a reorg, a shorter batch) is discarded, never used.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Rows = TypeVar("Rows")


class RangePrefetch(Generic[Rows]):
    """`fetch(start, end_exclusive)` run ahead of the caller, one range at a time."""

    def __init__(self, fetch: Callable[[int, int], Rows], *, name: str = "prefetch") -> None:
        self._fetch = fetch
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, int, Future[Rows]] | None = None

    @property
    def ahead(self) -> tuple[int, int] | None:
        """The range being fetched ahead, if any."""
        return None if self._ahead is None else self._ahead[:2]

    def ready(self) -> bool:
        """Whether the fetch ahead (if any) has finished, answered or failed."""
        return self._ahead is not None and self._ahead[2].done()

    def fetch_ahead(self, start: int, end_exclusive: int) -> None:
        """Start fetching [start, end_exclusive) in the background, in place of any earlier
        fetch ahead."""
        self.discard()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        self._ahead = (
            start,
            end_exclusive,
            self._executor.submit(self._fetch, start, end_exclusive),
        )

    def take(self, start: int, end_exclusive: int) -> Rows:
        """The rows of a range from `start`: the fetch ahead if it began at `start` and ends
        no later than `end_exclusive` (it may end earlier), else [start, end_exclusive) fetched
        now, in this thread. A fetch ahead that failed raises its error here, once."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead_start, ahead_end, future = ahead
            if ahead_start == start and ahead_end <= end_exclusive:
                return future.result()
            future.cancel()  # does not fit: whatever it returns is dropped
        return self._fetch(start, end_exclusive)

    def discard(self) -> None:
        """Forget the fetch ahead (it may still finish in the background; nobody reads it)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[2].cancel()

    def close(self) -> None:
        """Discard and let the thread end after its current fetch (not waited for: a stalled
        node must not hold up the caller's exit)."""
        self.discard()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
