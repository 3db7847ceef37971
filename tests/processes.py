"""Real Celery worker and beat processes for end-to-end tests, pointed at the test database
and the test broker, started and killed like an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from tests import subprocess_coverage


def test_state_db_url() -> str:
    db = settings.DATABASES["default"]
    host = db.get("HOST") or db.get("OPTIONS", {}).get("host") or "127.0.0.1"
    auth = quote(db["USER"] or "postgres", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{quote(host, safe='')}{port}/{connection.settings_dict['NAME']}"


def broker_key(name: str) -> str:
    """The Redis key kombu uses for `name` (a queue, `unacked`): under this run's prefix."""
    return settings.TRACE_BROKER_KEY_PREFIX + name


class ServiceProcess:
    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        ready_marker: str | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = {
            **os.environ,
            "TRACE_STATE_DB_URL": test_state_db_url(),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if ready_marker:
            self.wait_for_log(ready_marker, timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no acks, like a lost machine."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Test teardown: no need for a warm shutdown (which would wait for an always_on task
        to end), and killing is what the system must survive anyway. Under coverage the group
        saves its data first."""
        if self.proc.poll() is None:
            subprocess_coverage.save_group(self.proc.pid)
        self.kill()
        self._log.close()


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "trace_tasks.celery_app", *args]


def start_worker(
    name: str,
    log_dir: Path,
    queues: str = "platform,udf,delivery",
    concurrency: int = 2,
    pool: str = "prefork",
    env: dict[str, str] | None = None,
):
    return ServiceProcess(
        name,
        celery_argv(
            "worker",
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "-c",
            str(concurrency),
            "--pool",
            pool,
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",
        ),
        log_dir,
        ready_marker="ready.",
        env=env,
    )


def start_stream_worker(name: str, log_dir: Path, env: dict[str, str] | None = None):
    """The stream pool as Lite runs it: threads, a slot per always_on source."""
    return start_worker(name, log_dir, queues="stream", concurrency=20, pool="threads", env=env)


def start_beat(log_dir: Path) -> ServiceProcess:
    schedule = log_dir / "beat-schedule"
    return ServiceProcess(
        "beat",
        celery_argv("beat", "-l", "INFO", "--schedule", str(schedule)),
        log_dir,
        ready_marker="beat: Starting",
    )
