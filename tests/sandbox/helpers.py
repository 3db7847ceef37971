"""Running a handler through the real sandbox from a test: a bundle directory as the operator
lays it out (read-only, under a root-only temporary directory) and a TaskChannel of our own."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

from trace_tasks import sandbox

# One slot (uid) per xdist worker, so parallel workers do not wait on each other's slot lock.
SLOT = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


class RecordingChannel:
    """A TaskChannel (our own protocol) that answers queries from a table and records calls;
    `refuse` maps SQL to the (code, message) it refuses with."""

    def __init__(self, refuse: dict[str, tuple[str, str]] | None = None) -> None:
        self.queries: list[str] = []
        self.heartbeats = 0
        self.refuse = refuse or {}

    def query(self, sql: str) -> dict[str, Any]:
        self.queries.append(sql)
        if sql in self.refuse:
            raise sandbox.ChannelError(*self.refuse[sql])
        return {"columns": ["n"], "rows": [[1], [2]], "truncated": False}

    def heartbeat(self) -> None:
        self.heartbeats += 1


def bundle_dir(
    tmp_path: Path, source: str, files: dict[str, str] | None = None, main: str = "main.py"
) -> Path:
    """`main` (and `files`) written read-only under a 0700 directory, as the operator does."""
    tmp_path.chmod(0o700)
    root = tmp_path / "bundle"
    root.mkdir()
    for name, text in {main: source, **(files or {})}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        path.chmod(0o444)
    root.chmod(0o555)
    return root


def run(
    tmp_path: Path,
    source: str,
    *,
    channel: RecordingChannel | None = None,
    params: dict[str, Any] | None = None,
    block_range: tuple[int, int] | None = None,
    entrypoint: str = "main",
    files: dict[str, str] | None = None,
    stop_event=None,
    heartbeat_seconds: float = sandbox.HEARTBEAT_SECONDS,
    runtime: str = "python",
    **limits: Any,
) -> sandbox.HandlerResult:
    main = "main.mjs" if runtime == "node" else "main.py"
    handler = sandbox.HandlerRun(
        runtime=runtime,
        bundle_dir=bundle_dir(tmp_path, source, files, main),
        entrypoint=entrypoint,
        params=params or {},
        range=block_range,
        limits=sandbox.SandboxLimits(**limits),
        slot=SLOT,
    )
    return sandbox.run_handler(
        handler,
        channel or RecordingChannel(),
        stop_event=stop_event,
        heartbeat_seconds=heartbeat_seconds,
    )
