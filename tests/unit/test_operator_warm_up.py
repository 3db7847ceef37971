"""A worker process pays cryo_ingest's heavy imports when it starts, not in its first task."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import trace_operators.cryo_ingest
before = {m for m in ("cryo", "pyarrow.parquet") if m in sys.modules}
from trace_operators.registry import operators_warm_up
operators_warm_up(["cryo_ingest", "noop"])  # noop has no warm_up: nothing to do
after = {m for m in ("cryo", "pyarrow.parquet") if m in sys.modules}
print(sorted(before), sorted(after))
"""


def test_warm_up_imports_cryo_and_pyarrow_only_when_asked():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert out.split("\n")[0] == "[] ['cryo', 'pyarrow.parquet']"
