"""Benchmark: what the UDF sandbox adds to starting a handler. A trivial handler run through
`run_handler` (fresh `python -I -S`, rlimits, uid switch, Landlock, seccomp, the socket
protocol, the slot's clean-up) against the same interpreter started unsandboxed with the same
trivial code (`python -I -S -c ...` through subprocess), interleaved, N runs each.

    python bench/sandbox_startup.py [--runs 50]

Needs the machine the udf workers run on: root (the uid switch), Landlock and seccomp.
Goal: under 50 ms added at p50.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import percentile

from trace_tasks import sandbox

HANDLER = "def handle(ctx):\n    return [{'n': 1}]\n"
BARE = "import json; print(json.dumps([{'n': 1}]))"


class _Channel:
    def query(self, sql: str) -> dict:
        raise sandbox.ChannelError("refused", "the bench runs no queries")

    def heartbeat(self) -> None:
        pass


def sandboxed(bundle: Path) -> float:
    run = sandbox.HandlerRun(
        runtime="python",
        bundle_dir=bundle,
        entrypoint="main",
        params={},
        range=None,
        limits=sandbox.SandboxLimits(),
        slot=0,
    )
    started = time.perf_counter()
    result = sandbox.run_handler(run, _Channel())
    elapsed = time.perf_counter() - started
    assert result.rows == [{"n": 1}]
    return elapsed


def bare() -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", BARE], capture_output=True, check=True, env={}
    )
    elapsed = time.perf_counter() - started
    assert done.stdout.strip() == b'[{"n": 1}]'
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(sandbox.sandbox_probe())
    with tempfile.TemporaryDirectory(prefix="trace-bench-sandbox-") as tmp:
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        (bundle / "main.py").write_text(HANDLER)
        sandboxed(bundle), bare()  # warm the page cache for both
        times: dict[str, list[float]] = {"sandboxed": [], "bare": []}
        for _ in range(args.runs):
            times["sandboxed"].append(sandboxed(bundle))
            times["bare"].append(bare())
    print(f"\nStarting a trivial handler, {args.runs} runs each, interleaved (ms)")
    print(f"{'path':<34}{'p50':>9}{'p95':>9}")
    for name, label in (
        ("bare", "python -I -S -c (unsandboxed)"),
        ("sandboxed", "run_handler (sandboxed)"),
    ):
        values = times[name]
        p50, p95 = percentile(values, 0.5) * 1e3, percentile(values, 0.95) * 1e3
        print(f"{label:<34}{p50:>9.1f}{p95:>9.1f}")
    for q in (50, 95):
        s, b = percentile(times["sandboxed"], q / 100), percentile(times["bare"], q / 100)
        print(f"p{q}: +{(s - b) * 1e3:.1f} ms added, {s / b:.2f}x")


if __name__ == "__main__":
    main()
