"""`trace worker-alive`, the liveness check containers run: exit 0 only while the worker's
file was touched within --max-age (the touching itself runs in real workers in the drills)."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def worker_alive(directory, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trace_web.cli", "worker-alive", *args],
        env={**os.environ, "TRACE_WORKER_ALIVE_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fresh_stale_and_missing_liveness_files(tmp_path):
    assert worker_alive(tmp_path).returncode == 1  # no worker ever consumed
    alive = tmp_path / "platform@host.alive"
    alive.touch()
    assert worker_alive(tmp_path).returncode == 0
    assert worker_alive(tmp_path, "--node", "platform@host").returncode == 0
    missing = worker_alive(tmp_path, "--node", "stream@host")
    assert missing.returncode == 1 and "not consuming" in missing.stderr
    old = time.time() - 120
    os.utime(alive, (old, old))
    stale = worker_alive(tmp_path, "--max-age", "60")
    assert stale.returncode == 1 and "s old (over 60s)" in stale.stderr
