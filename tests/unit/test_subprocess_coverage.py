"""Coverage of a SIGKILLed child: the save signal writes its data before test teardown kills it
(tests/subprocess_coverage.py, tests/coverage_site/sitecustomize.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import coverage

from tests import subprocess_coverage
from trace_web.lite.stack import REPO_ROOT

# A child that runs one measured function, says so, and then waits to be killed.
CHILD = """
from trace_web.orchestration.services.backoff import backoff_seconds
backoff_seconds(tries=3, base=1.0, cap=60.0)
print("ran", flush=True)
import time
while True:
    time.sleep(0.05)
"""


def _start_measured_child(tmp_path: Path) -> subprocess.Popen:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")
    }
    env |= {
        "COVERAGE_PROCESS_START": str(REPO_ROOT / "pyproject.toml"),
        "COVERAGE_FILE": str(tmp_path / ".coverage"),
        "PYTHONPATH": str(subprocess_coverage.SITE_DIR),
        "TRACE_COVERAGE_MARKERS": str(tmp_path),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ran"
    return child


def _measured_lines(tmp_path: Path) -> set[int]:
    lines: set[int] = set()
    for path in tmp_path.glob(".coverage.*"):
        part = coverage.CoverageData(basename=str(path))
        part.read()
        for name in part.measured_files():
            if name.endswith("orchestration/services/backoff.py"):
                lines |= set(part.lines(name) or [])
    return lines


def test_a_killed_child_saves_its_coverage_when_asked_first(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_COVERAGE_MARKERS", str(tmp_path))
    child = _start_measured_child(tmp_path)
    try:
        subprocess_coverage.save_group(child.pid)
        assert (tmp_path / str(child.pid)).exists()  # the child's handler ran
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    # Lines of the function body ran in the child and survived its SIGKILL.
    assert len(_measured_lines(tmp_path)) >= 2


def test_without_the_save_signal_a_killed_child_loses_its_coverage(tmp_path):
    child = _start_measured_child(tmp_path)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert _measured_lines(tmp_path) == set()


def test_save_group_returns_for_a_process_without_the_handler(tmp_path, monkeypatch):
    """A member without the handler dies of the signal; the wait ends when it is gone."""
    monkeypatch.setenv("TRACE_COVERAGE_MARKERS", str(tmp_path))
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    subprocess_coverage.save_group(child.pid)
    assert child.wait(timeout=10) == -subprocess_coverage.SAVE_SIGNAL
