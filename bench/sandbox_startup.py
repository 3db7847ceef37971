"""Benchmark: what the UDF sandbox adds to starting a handler. A trivial handler run through
`run_handler` (fresh `python -I -S`, rlimits, uid switch, Landlock, seccomp, the socket
protocol, the slot's clean-up) against the same interpreter started unsandboxed with the same
trivial code (`python -I -S -c ...` through subprocess), interleaved, N runs each.

    python bench/sandbox_startup.py [--runs 50]

The same for the Node runtime: an ES module handler through `run_handler` against
`node -e ...` started unsandboxed.

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
NODE_HANDLER = "export async function handle(ctx) { return [{n: 1}]; }\n"
NODE_BARE = "console.log(JSON.stringify([{n: 1}]))"


class _Channel:
    def query(self, sql: str) -> dict:
        raise sandbox.ChannelError("refused", "the bench runs no queries")

    def heartbeat(self) -> None:
        pass


def sandboxed(bundle: Path, runtime: str = "python") -> float:
    run = sandbox.HandlerRun(
        runtime=runtime,
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


def bare(runtime: str = "python") -> float:
    command = (
        [sys.executable, "-I", "-S", "-c", BARE]
        if runtime == "python"
        else [sandbox.node_runtime()[0], "-e", NODE_BARE]
    )
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=True, env={})
    elapsed = time.perf_counter() - started
    assert done.stdout.strip() == b'[{"n": 1}]' or done.stdout.strip() == b'[{"n":1}]'
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
        (bundle / "main.mjs").write_text(NODE_HANDLER)
        runtimes = ["python", *(["node"] if "node" in sandbox.sandbox_probe()["runtimes"] else [])]
        times: dict[tuple[str, str], list[float]] = {}
        for runtime in runtimes:
            sandboxed(bundle, runtime), bare(runtime)  # warm the page cache for both
            for _ in range(args.runs):
                times.setdefault((runtime, "sandboxed"), []).append(sandboxed(bundle, runtime))
                times.setdefault((runtime, "bare"), []).append(bare(runtime))
    print(f"\nStarting a trivial handler, {args.runs} runs each, interleaved (ms)")
    print(f"{'path':<40}{'p50':>9}{'p95':>9}")
    labels = {
        ("python", "bare"): "python -I -S -c (unsandboxed)",
        ("python", "sandboxed"): "python: run_handler (sandboxed)",
        ("node", "bare"): "node -e (unsandboxed)",
        ("node", "sandboxed"): "node: run_handler (sandboxed)",
    }
    for key, values in times.items():
        p50, p95 = percentile(values, 0.5) * 1e3, percentile(values, 0.95) * 1e3
        print(f"{labels[key]:<40}{p50:>9.1f}{p95:>9.1f}")
    for runtime in runtimes:
        for q in (50, 95):
            s = percentile(times[(runtime, "sandboxed")], q / 100)
            b = percentile(times[(runtime, "bare")], q / 100)
            print(f"{runtime} p{q}: +{(s - b) * 1e3:.1f} ms added, {s / b:.2f}x")


if __name__ == "__main__":
    main()
