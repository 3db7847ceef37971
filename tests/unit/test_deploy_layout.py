"""Lite, the Procfile and docker compose run the same worker layout: one worker per queue, the
stream queue on a thread pool, and (in containers) a liveness healthcheck on every worker."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from trace_tasks.queues import Queue
from trace_web.lite import stack

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def layout(argv: list[str]) -> tuple[str, str, str]:
    """(queue, pool, concurrency) of a `celery ... worker` command line."""
    pool = argv[argv.index("--pool") + 1] if "--pool" in argv else "prefork"
    return argv[argv.index("-Q") + 1], pool, argv[argv.index("--concurrency") + 1]


def lite_layout() -> set[tuple[str, str, str]]:
    return {layout(c.argv) for c in stack.worker_components()}


def test_procfile_runs_lites_worker_layout():
    workers = [
        shlex.split(line.split(":", 1)[1])
        for line in (DEPLOY / "Procfile").read_text().splitlines()
        if line.startswith("worker_")
    ]
    assert {layout(argv) for argv in workers} == lite_layout()


def test_compose_runs_lites_worker_layout_with_a_liveness_check():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    workers = {name: s for name, s in services.items() if name.startswith("worker-")}
    assert {layout(s["command"]) for s in workers.values()} == lite_layout()
    for service in workers.values():
        assert "trace worker-alive" in service["healthcheck"]["test"][1]


def test_every_queue_has_exactly_one_worker_and_only_stream_uses_threads():
    queues = sorted(queue for queue, _, _ in lite_layout())
    assert queues == sorted(q.value for q in Queue)
    assert {queue for queue, pool, _ in lite_layout() if pool == "threads"} == {"stream"}
