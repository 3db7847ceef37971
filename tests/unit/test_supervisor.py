"""Lite's supervisor with small real child processes: a dead child is restarted after a
backoff and the restart is logged; the chain's death is not restarted; a worker that stops
consuming is replaced; children stop in order; logs rotate without losing the writer."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from trace_web.lite import supervisor as supervisor_module
from trace_web.lite.supervisor import Component, StackError, Supervisor, rotate_log

REPO = Path(__file__).resolve().parents[2]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = python("import time\nwhile True: time.sleep(1)")


def supervise(components, tmp_path, **kwargs) -> Supervisor:
    notes: list[str] = []
    sup = Supervisor(
        components,
        env={"PATH": "/usr/bin:/bin"},
        log_dir=tmp_path / "logs",
        cwd=REPO,
        die_with_parent=False,
        say=notes.append,
        **kwargs,
    )
    sup.notes = notes  # type: ignore[attr-defined]
    return sup


def run_until(sup: Supervisor, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.check()
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not reached in {timeout}s; notes: {sup.notes}")


@pytest.fixture
def stopped():
    started: list[Supervisor] = []
    yield started.append
    for sup in started:
        sup.kill_all()


def test_a_dead_child_is_restarted_with_a_growing_pause_and_the_restart_is_logged(
    tmp_path, stopped
):
    child = Component("worker-platform", SLEEPER)
    sup = supervise([child], tmp_path)
    stopped(sup)
    sup.start_all()
    first = child.proc.pid
    child.proc.send_signal(signal.SIGKILL)
    run_until(sup, lambda: child.proc is not None and child.proc.pid != first)
    assert child.restarts == 1 and child.backoff == supervisor_module.RESTART_BACKOFF_FIRST_SECONDS
    second = child.proc.pid
    child.proc.send_signal(signal.SIGKILL)  # dies again at once: the pause doubles
    run_until(sup, lambda: child.proc is not None and child.proc.pid != second)
    assert child.restarts == 2
    assert child.backoff == 2 * supervisor_module.RESTART_BACKOFF_FIRST_SECONDS
    log = (tmp_path / "logs" / "worker-platform.log").read_text()
    assert log.count("supervisor: exited (code -9); restarting in") == 2
    assert "supervisor: restarting (restart #2)" in log
    assert any("worker-platform exited (code -9)" in note for note in sup.notes)


def test_the_chain_is_not_restarted_its_death_stops_the_stack(tmp_path, stopped):
    anvil = Component("anvil", SLEEPER, restart=False)
    sup = supervise([anvil, Component("web", SLEEPER)], tmp_path)
    stopped(sup)
    sup.start_all()
    anvil.proc.send_signal(signal.SIGKILL)
    anvil.proc.wait()
    with pytest.raises(StackError, match="anvil exited unexpectedly"):
        sup.check()


def test_a_worker_that_stops_touching_its_liveness_file_is_killed_and_restarted(tmp_path, stopped):
    from trace_tasks.liveness import alive_path

    alive_dir = tmp_path / "alive"
    alive_dir.mkdir()
    worker = Component("worker-stream", SLEEPER, alive_node="stream@host")
    sup = supervise([worker], tmp_path, alive_dir=alive_dir, alive_max_age=1.0)
    stopped(sup)
    sup.start_all()
    first = worker.proc.pid
    alive_path("stream@host", alive_dir).touch()  # consuming, then never again
    run_until(sup, lambda: worker.restarts == 1)
    assert worker.proc is None or worker.proc.pid != first
    assert (
        "not consuming for over 1s; killed" in (tmp_path / "logs" / "worker-stream.log").read_text()
    )


def test_workers_and_beat_stop_before_the_chain_and_the_web(tmp_path, stopped):
    """Each child records when SIGTERM reaches it; the first group must be gone before the
    second group hears anything."""
    record = tmp_path / "stops.txt"

    def child(name: str) -> list[str]:
        return python(
            "import signal, sys, time\n"
            f"def bye(*_):\n    open({str(record)!r}, 'a').write({name!r} + '\\n'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "print('handler' + '-set', flush=True)\n"  # not in the argv the log starts with
            "while True: time.sleep(0.05)"
        )

    components = [
        Component("anvil", child("anvil"), restart=False, stop_order=1),
        Component("web", child("web"), stop_order=1),
        Component("beat", child("beat"), stop_order=0),
        Component("worker-stream", child("worker-stream"), stop_order=0),
    ]
    sup = supervise(components, tmp_path)
    stopped(sup)
    sup.start_all()
    logs = [tmp_path / "logs" / f"{c.name}.log" for c in components]
    run_until(sup, lambda: all("handler-set" in log.read_text() for log in logs))
    sup.stop_all()
    order = record.read_text().split()
    assert sorted(order[:2]) == ["beat", "worker-stream"]
    assert sorted(order[2:]) == ["anvil", "web"]


def test_a_big_log_is_copied_and_truncated_while_its_writer_keeps_appending(tmp_path, stopped):
    writer = Component(
        "worker-dispatcher",
        python("import sys, time\nwhile True:\n    print('x' * 99, flush=True); time.sleep(0.001)"),
    )
    sup = supervise([writer], tmp_path)
    sup.log_max_bytes = 50_000
    sup.log_backups = 2
    stopped(sup)
    sup.start_all()
    log = tmp_path / "logs" / "worker-dispatcher.log"
    for _ in range(3):  # three rotations: the oldest backup falls off
        run_until(sup, lambda: log.stat().st_size > 60_000)
        sup.rotate_logs()
    backups = sorted(p.name for p in log.parent.iterdir())
    assert backups == [
        "worker-dispatcher.log",
        "worker-dispatcher.log.1",
        "worker-dispatcher.log.2",
    ]
    run_until(sup, lambda: log.stat().st_size > 1_000)
    sup.kill_all()
    # The writer appends at the new end: no hole of NUL bytes where the old content was.
    data = log.read_bytes()
    assert b"\0" not in data
    assert all(line == "x" * 99 for line in data.decode().splitlines()[:-1])


def test_rotate_log_keeps_numbered_backups(tmp_path):
    log = tmp_path / "web.log"
    for content in ("one", "two", "three", "four"):
        log.write_text(content)
        rotate_log(log, backups=3)
    assert log.read_text() == ""
    assert [(tmp_path / f"web.log.{i}").read_text() for i in (1, 2, 3)] == ["four", "three", "two"]


def test_lite_stops_workers_and_beat_before_the_chain_web_and_flower():
    from trace_web.lite import stack

    components = stack._devchain_components(Path("/tmp/home"), 8545) + stack._components(1, 2)
    first = {c.name for c in components if c.stop_order == min(x.stop_order for x in components)}
    assert first == {"beat", *(f"worker-{q}" for q in stack.WORKER_CONCURRENCY), "worker-stream"}
    later = {c.name for c in components} - first
    assert later == {"anvil", "chain-traffic", "web", "flower"}
    # Everything but the chain is restarted when it dies.
    assert [c.name for c in components if not c.restart] == ["anvil"]


def test_lite_serves_the_stream_queue_with_a_thread_pool_and_batch_queues_with_processes():
    from trace_web.lite import stack

    workers = {c.name: c.argv for c in stack.worker_components()}
    stream = workers.pop("worker-stream")
    assert stream[stream.index("--pool") + 1] == "threads"
    assert int(stream[stream.index("--concurrency") + 1]) == stack.STREAM_SLOTS
    assert workers  # the other pools are there to check
    for argv in workers.values():
        assert "--pool" not in argv  # Celery's default prefork pool
        assert argv[argv.index("-Q") + 1] != "stream"
