"""Lines covered per package, from the combined coverage data (docs/testing.md, "Coverage").

    python -m coverage combine && python -m tests.coverage_report

The goal is GOAL_PERCENT of the lines of each package; the report says where each stands and
exits 0 either way (a figure to watch, not yet a gate).
"""

from __future__ import annotations

import sys
from collections import defaultdict

import coverage

PACKAGES = ("trace_web", "trace_tasks", "trace_operators", "trace_chain")
GOAL_PERCENT = 90.0


def per_package(cov: coverage.Coverage) -> dict[str, tuple[int, int]]:
    """{package: (statements, statements run)} over every measured file."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    data = cov.get_data()
    for path in data.measured_files():
        package = next((p for p in PACKAGES if f"/{p}/" in path), None)
        if package is None:
            continue
        _, statements, _, missing, _ = cov.analysis2(path)
        totals[package][0] += len(statements)
        totals[package][1] += len(statements) - len(missing)
    return {p: (totals[p][0], totals[p][1]) for p in PACKAGES}


def main() -> int:
    cov = coverage.Coverage()
    cov.load()
    rows = per_package(cov)
    print(f"{'package':18} {'lines':>7} {'run':>7} {'cover':>7}   goal {GOAL_PERCENT:.0f}%")
    all_lines = all_run = 0
    for package, (lines, run) in rows.items():
        all_lines, all_run = all_lines + lines, all_run + run
        percent = 100.0 * run / lines if lines else 0.0
        mark = "" if percent >= GOAL_PERCENT else "  below goal"
        print(f"{package:18} {lines:7} {run:7} {percent:6.1f}%{mark}")
    total = 100.0 * all_run / all_lines if all_lines else 0.0
    print(f"{'total':18} {all_lines:7} {all_run:7} {total:6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
