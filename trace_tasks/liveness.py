"""Worker liveness: a consumer bootstep that touches `<TRACE_WORKER_ALIVE_DIR>/<node>.alive`
from the worker's event loop while it consumes, and the check that reads it.

A worker can be alive as a process yet consume nothing (stuck reconnecting to the broker
after an outage, a known class of kombu Redis-transport bugs), so "the process runs" is not
enough: the file stops being touched when the consumer's loop stops turning or the consumer
stops (connection lost), and an orchestrator that restarts the worker on a failed check gets
work flowing again without a hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from celery import bootsteps

TOUCH_SECONDS = 5.0
DEFAULT_MAX_AGE_SECONDS = 60.0


def alive_dir() -> Path:
    # The settings module itself (not Django's settings object): the check runs in a
    # healthcheck without the secrets that the full Django settings need.
    from trace_web.settings.celery import TRACE_WORKER_ALIVE_DIR

    return TRACE_WORKER_ALIVE_DIR


def alive_path(node: str, directory: Path | None = None) -> Path:
    """The file of one worker node (`platform@host`); characters unsafe in a file name are
    replaced."""
    return (directory or alive_dir()) / (re.sub(r"[^A-Za-z0-9@._-]", "_", node) + ".alive")


class LivenessProbe(bootsteps.StartStopStep):
    """Started once the consumer consumes (after its Tasks step), stopped when it stops,
    e.g. on a lost broker connection; the consumer's timer runs in its event loop."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref = None
        self.path: Path | None = None

    def start(self, consumer) -> None:
        self.path = alive_path(consumer.hostname)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._touch()
        self.timer_ref = consumer.timer.call_repeatedly(TOUCH_SECONDS, self._touch)

    def stop(self, consumer) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def shutdown(self, consumer) -> None:
        self.stop(consumer)
        if self.path is not None:  # a worker that stopped on purpose is not a stuck one
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _touch(self) -> None:
        assert self.path is not None
        self.path.touch()


def worker_alive(
    *,
    node: str | None = None,
    max_age: float = DEFAULT_MAX_AGE_SECONDS,
    directory: Path | None = None,
) -> tuple[bool, str]:
    """Whether the worker `node` (or, without one, every worker whose file is in the
    directory, at least one) touched its file within `max_age` seconds; and why not."""
    directory = directory or alive_dir()
    paths = [alive_path(node, directory)] if node else sorted(directory.glob("*.alive"))
    if not paths:
        return False, f"no worker liveness file in {directory}"
    now = time.time()
    for path in paths:
        try:
            age = now - os.stat(path).st_mtime
        except FileNotFoundError:
            return False, f"{path} does not exist: the worker is not consuming"
        if age > max_age:
            return False, f"{path} is {age:.0f}s old (over {max_age:.0f}s): not consuming"
    return True, "ok"
