"""The Lite worker layout for drills (a pytest plugin loaded by tests/conftest.py): beat and one
worker per queue exactly as `trace lite up` runs them (trace_web.lite.stack.celery_components),
under Lite's own supervisor, which restarts what dies; on a private Redis the test may stop, and
on the test databases, optionally through a fault proxy the test may cut.

The test process drives the supervisor: `LiteStack.wait_for` runs a supervision pass between
polls, so a worker that dies is restarted by the product's code, not by the test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import subprocess_coverage
from tests.faults import FaultProxy, PrivateRedis
from tests.processes import test_state_db_url
from trace_web.lite.stack import REPO_ROOT, celery_components
from trace_web.lite.supervisor import Component, Supervisor

# The udf and delivery pools run nothing in these drills; leaving them out saves two worker
# processes on a two-core machine.
DEFAULT_COMPONENTS = ("beat", "worker-platform", "worker-stream", "worker-dispatcher")


def via_proxy(url: str, proxy: FaultProxy) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{proxy.port}"))


class LiteStack:
    def __init__(self, home: Path, broker: PrivateRedis) -> None:
        self.home = home
        self.broker = broker
        self.db_proxy: FaultProxy | None = None
        self.supervisor: Supervisor | None = None
        self.notes: list[str] = []
        self.alive_dir = home / "alive"

    def start(
        self,
        *,
        names: tuple[str, ...] = DEFAULT_COMPONENTS,
        env: dict[str, str] | None = None,
        db_proxy: bool = False,
        extra: tuple[Component, ...] = (),
    ) -> LiteStack:
        state_url = test_state_db_url()
        data_url = os.environ["TRACE_DATA_DB_URL"]
        if db_proxy:
            parts = urlsplit(state_url)
            self.db_proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
            state_url = via_proxy(state_url, self.db_proxy)
            data_url = via_proxy(data_url, self.db_proxy)
        components = [*extra, *(c for c in celery_components() if c.name in names)]
        child_env = {
            **os.environ,
            "TRACE_HOME": str(self.home),
            "TRACE_STATE_DB_URL": state_url,
            "TRACE_DATA_DB_URL": data_url,
            "TRACE_BROKER_URL": self.broker.url(),
            "TRACE_WORKER_ALIVE_DIR": str(self.alive_dir),
            # Lite's tick: beat's database scheduler keeps whole seconds.
            "TRACE_DISPATCH_TICK_SECONDS": "1",
            **(env or {}),
        }
        self.supervisor = Supervisor(
            components,
            env=child_env,
            log_dir=self.home / "logs",
            cwd=REPO_ROOT,
            alive_dir=self.alive_dir,
            die_with_parent=False,  # the test process has threads; teardown stops them
            say=self.notes.append,
        )
        self.supervisor.start_all()
        for component in components:
            if component.name.startswith("worker-"):
                self.wait_for_log(component.name, "ready.")
        self.wait_for_log("beat", "beat: Starting")
        return self

    def component(self, name: str) -> Component:
        assert self.supervisor is not None
        return self.supervisor.component(name)

    def log(self, name: str) -> str:
        path = self.home / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, name: str, marker: str, timeout: float = 90) -> None:
        self.wait_for(lambda: marker in self.log(name), timeout=timeout, what=f"{name}: {marker}")

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 60, what: str = "condition"
    ) -> Any:
        """Poll `predicate` until it is truthy, supervising the stack between polls."""
        assert self.supervisor is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervisor.check()
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; supervisor: {self.notes[-5:]}"
        )

    def hold(self, seconds: float) -> None:
        """Keep supervising for the length of an injected fault."""
        assert self.supervisor is not None
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.supervisor.check()
            time.sleep(0.2)

    def kill(self, name: str) -> int:
        """SIGKILL a component's whole process group, like a lost machine; returns its pid."""
        component = self.component(name)
        assert component.proc is not None
        pid = component.proc.pid
        os.killpg(pid, 9)
        return pid

    def stop(self) -> None:
        if self.supervisor is not None:
            for component in self.supervisor.components:
                if component.proc is not None and component.proc.poll() is None:
                    subprocess_coverage.save_group(component.proc.pid)
            self.supervisor.kill_all()
        if self.db_proxy is not None:
            self.db_proxy.close()


@pytest.fixture
def lite_stack(transactional_db, tmp_path, settings) -> Iterator[LiteStack]:
    """A private broker (started) and a LiteStack to `.start()`; the test process publishes to
    the same broker. Everything is killed at teardown, before the database is flushed."""
    from trace_tasks import publisher

    broker = PrivateRedis(tmp_path / "redis")
    broker.start()
    settings.TRACE_BROKER_URL = broker.url()
    publisher._breaker.reset()
    stack = LiteStack(tmp_path, broker)
    try:
        yield stack
    finally:
        stack.stop()
        broker.stop()
        publisher._breaker.reset()
