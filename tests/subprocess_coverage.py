"""Coverage across the processes the tests start: the test side of
tests/coverage_site/.

`python -m coverage run -m pytest` measures this process; `[tool.coverage.run] patch =
subprocess` (pyproject.toml) starts coverage in every Python child, `fork` in forked pool
processes, `_exit` saves before `os._exit`. What the patches cannot see is a SIGKILL, and test
teardown kills workers and beat: `save_group` asks a process group to save first.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

SITE_DIR = Path(__file__).parent / "coverage_site"
SAVE_TIMEOUT_SECONDS = 20
SAVE_SIGNAL = signal.SIGUSR2  # the one tests/coverage_site/sitecustomize.py handles


def measuring() -> bool:
    """True when this test process runs under coverage (`coverage run` with the subprocess
    patch, or started by coverage's .pth because COVERAGE_PROCESS_START is set)."""
    return bool(
        os.environ.get("COVERAGE_PROCESS_CONFIG") or os.environ.get("COVERAGE_PROCESS_START")
    )


def prepare_children_environment() -> None:
    """Put the save-signal boot on the PYTHONPATH every child inherits."""
    if not measuring() or os.environ.get("TRACE_COVERAGE_MARKERS"):
        return
    os.environ["TRACE_COVERAGE_MARKERS"] = tempfile.mkdtemp(prefix="trace-coverage-")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{SITE_DIR}{os.pathsep}{path}" if path else str(SITE_DIR)


def save_group(pgid: int) -> None:
    """Signal every process of the group to save its coverage data, and wait until each one has
    written its marker or is gone (a process without the handler dies of the signal)."""
    markers = os.environ.get("TRACE_COVERAGE_MARKERS")
    if not markers:
        return
    try:
        os.killpg(pgid, SAVE_SIGNAL)
    except ProcessLookupError:
        return
    pending = set(_group_members(pgid))
    deadline = time.monotonic() + SAVE_TIMEOUT_SECONDS
    while pending and time.monotonic() < deadline:
        alive = set(_group_members(pgid))
        pending = {pid for pid in pending & alive if not Path(markers, str(pid)).exists()}
        if pending:
            time.sleep(0.05)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members
