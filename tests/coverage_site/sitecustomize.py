"""Imported at start-up by the Python processes the tests start while coverage measures the
suite (tests/subprocess_coverage.py puts this folder on their PYTHONPATH): a signal that saves
the coverage data.

Test teardown SIGKILLs workers and beat (a warm shutdown would wait for an always_on task), and
SIGKILL runs no exit hook, so coverage's own save-at-exit never happens there. Before killing,
the test sends SAVE_SIGNAL to the process group; each measured process writes its data and a
marker named by its pid, then waits for the kill. Prefork pool children get billiard's
terminate handler for the same signal instead: they exit, and coverage's `_exit` patch saves.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

SAVE_SIGNAL = signal.SIGUSR2  # tests/subprocess_coverage.py sends it


def _install() -> None:
    markers = os.environ.get("TRACE_COVERAGE_MARKERS")
    if not markers:
        return
    try:
        import coverage
    except ImportError:
        return

    def save(signum, frame) -> None:
        cov = coverage.Coverage.current()
        if cov is not None:
            cov.save()
        Path(markers, str(os.getpid())).touch()

    signal.signal(SAVE_SIGNAL, save)


_install()
