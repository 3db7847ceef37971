"""The README's first command, end to end: `trace lite up` on a new home with no service URL set
starts its own Postgres and Redis, migrates, bootstraps, runs the demo, and the demo's query
over the whole chain answers, cold below the compaction line and hot above it; the demo's
alert tells its matching transaction once, by a signed webhook to the local receiver; `trace lite
status` sees every component alive; `trace lite down` stops it all, embedded services
included, and leaves no process of it behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.faults import free_port
from trace_web.lite import services

pytestmark = pytest.mark.celery

TRACE = str(Path(sys.executable).parent / "trace")
DEMO_TIMEOUT_SECONDS = 420  # the demo waits for the first compacted range, then queries
# The demo query's answer row: blocks, first, last, gas.
ANSWER = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
COLD = re.compile(r"demo: blocks \[0, (\d+)\) are cold Parquet now")
# The alert demo: the matching transaction it sent, and the webhook the receiver verified.
SENT = re.compile(r"demo: sent 1\.5 ETH from 0x[0-9a-f]{40} to 0x0+dead in (0x[0-9a-f]{64})$")
RECEIVED = re.compile(r"demo: webhook received [\d.]+ s after the block was mined:$")
# The integrity demo: the first cron-driven check that had compacted blocks to check.
INTEGRITY = re.compile(
    r"demo: integrity check of chain 31337 blocks \[(\d+), (\d+)\): (\w+), (\d+) blocks "
    r"checked, (\d+) mismatches"
)


def lite_env() -> dict[str, str]:
    """The machine's environment without any Trace setting, as on a user's new machine (the
    test session's coverage setting is kept, so the stack's processes are measured)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("TRACE_")}


def logs_tail(home: Path) -> str:
    return "".join(
        f"\n--- {log.name}\n" + log.read_text(errors="replace")[-1500:]
        for log in sorted((home / "logs").glob("*.log"))
    )


def test_lite_up_runs_the_demo_and_down_leaves_nothing(tmp_path):
    home = tmp_path / "home"
    port, flower_port = free_port(), free_port()
    argv = [TRACE, "lite", "up", "--home", str(home), "--port", str(port)]
    up = subprocess.Popen(
        [*argv, "--flower-port", str(flower_port)],
        env=lite_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read_then_reap() -> None:  # as a shell would: `down` waits for the supervisor to go
        lines.extend(up.stdout)
        up.wait()

    reader = threading.Thread(target=read_then_reap, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
        while not (
            any(ANSWER.match(line) for line in lines)
            and any(RECEIVED.match(line) for line in lines)
            and any(INTEGRITY.search(line) for line in lines)
        ):
            assert up.poll() is None, "".join(lines)[-4000:]
            assert time.monotonic() < deadline, "".join(lines)[-4000:]
            for failed in (
                "nothing compacted",
                "no webhook for",
                "alert job did not start",
                "no integrity check",
            ):
                assert not any(failed in line for line in lines), "".join(lines)
            time.sleep(0.5)
        output = "".join(lines)
        state = json.loads((home / "lite.json").read_text())
        status = subprocess.run(
            [TRACE, "lite", "status", "--home", str(home)],
            env=lite_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        embedded = [services.postgres_pid(home), services.redis_pid(home)]
    finally:
        down = subprocess.run(
            [TRACE, "lite", "down", "--home", str(home)],
            env=lite_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        up.wait(timeout=120)
        reader.join(timeout=10)

    # The demo's whole-chain query: every block from 0 once, the cold range among them.
    (cold_end,) = (int(m.group(1)) for m in map(COLD.search, lines) if m)
    (answer,) = (ANSWER.match(line) for line in lines if ANSWER.match(line))
    blocks, first, last, gas = (int(value) for value in answer.groups())
    assert first == 0 and blocks == last + 1 and blocks > cold_end > 0, output
    assert gas > 0
    assert "demo: trace run_job noop-demo extract --org demo" in output
    assert " -> failed" not in output, output

    # The alert demo: the transaction it sent was told once, by a webhook whose signature the
    # receiver verified with the channel's secret.
    (tx_hash,) = (m.group(1) for m in map(SENT.search, lines) if m)
    at = next(i for i, line in enumerate(lines) if RECEIVED.match(line))
    assert tx_hash in lines[at + 1] and "[delivery 1, signature verified]" in lines[at + 1], output
    received = (home / "logs" / "alert-receiver.log").read_text()
    assert received.count(tx_hash) == 1 and received.count("[delivery ") == 1, received

    # The cron-driven integrity DAG ran over compacted blocks and found them clean.
    (check,) = (m for m in map(INTEGRITY.search, lines) if m)
    start, end, status_word, checked, mismatches = check.groups()
    assert (status_word, int(mismatches)) == ("clean", 0), output
    assert int(end) > int(start) and int(checked) == int(end) - int(start), output

    # status saw every component alive; both services were the stack's own.
    assert status.returncode == 0, status.stdout + status.stderr
    for name in state["components"]:
        assert re.search(rf"^\s+{re.escape(name)}\s+\d+\s+alive", status.stdout, re.M), (
            name,
            status.stdout,
        )
    assert all(pid is not None for pid in embedded)

    # down: the supervisor stopped cleanly and took everything with it.
    assert down.returncode == 0 and "Trace Lite stopped." in down.stdout, (
        down.stdout + down.stderr + "".join(lines)[-3000:] + logs_tail(home)
    )
    assert up.returncode == 0, "".join(lines)[-3000:] + logs_tail(home)
    assert not (home / "lite.json").exists()
    pids = [row["pid"] for row in state["components"].values() if row["pid"]]
    left = [pid for pid in [*pids, *embedded, state["supervisor_pid"]] if services.pid_alive(pid)]
    assert left == [], left
