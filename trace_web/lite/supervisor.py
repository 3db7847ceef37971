"""Lite's process supervisor: starts the stack's children, restarts one that dies or (a worker)
stops consuming, with a backoff and a line in the log, rotates their logs by size, and stops
them in order: workers and beat first, so no attempt is cut off by a chain or web that is
already gone, then the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Restart pauses double from the first to the last; a child that ran this long before it
# died counts as having worked, and starts again from the first pause.
RESTART_BACKOFF_FIRST_SECONDS = 1.0
RESTART_BACKOFF_MAX_SECONDS = 60.0
STABLE_SECONDS = 60.0
# A worker whose liveness file (trace_tasks.liveness) is older than this is not consuming:
# killed and restarted. Longer than a broker outage is worth waiting out in place.
ALIVE_MAX_AGE_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0
ROTATE_CHECK_SECONDS = 10.0


class StackError(RuntimeError):
    """Lite could not start or keep running; the message says what to look at."""


@dataclass
class Component:
    name: str
    argv: list[str]
    url: str = ""
    # Restarted when it dies. The chain is not: anvil saves its state on a clean exit only,
    # so a restarted one may have lost blocks the stack already ingested.
    restart: bool = True
    stop_order: int = 1  # lower stops first
    alive_node: str = ""  # a Celery worker's node name, whose liveness file is checked
    log: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None  # when a dead child is due to start again
    backoff: float = 0.0


class Supervisor:
    def __init__(
        self,
        components: list[Component],
        *,
        env: dict[str, str],
        log_dir: Path,
        cwd: Path,
        alive_dir: Path | None = None,
        alive_max_age: float = ALIVE_MAX_AGE_SECONDS,
        die_with_parent: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        self.components = components
        self.env = env
        self.log_dir = log_dir
        self.cwd = cwd
        self.alive_dir = alive_dir  # where workers' liveness files are (None: not checked)
        self.alive_max_age = alive_max_age
        # The kernel terminates children when the supervisor dies (Linux). Needs a
        # preexec_fn, safe only in a single-threaded parent (Lite's supervisor is one).
        self.die_with_parent = die_with_parent
        self.say = say
        # Imported here: the settings package reads the secrets, which exist only once Lite
        # resolved them (the caller exports them first).
        from trace_web.settings.env import env_int

        self.log_max_bytes = env_int("TRACE_LITE_LOG_MAX_BYTES", 10_000_000)
        self.log_backups = env_int("TRACE_LITE_LOG_BACKUPS", 3)
        self._rotated_at = 0.0

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    # --- starting and watching ---------------------------------------------------------------

    def start_all(self) -> None:
        self.rotate_logs()
        for component in self.components:
            self._start(component)

    def check(self) -> None:
        """One supervision pass: restart what died (when its pause is over) or stopped
        consuming, rotate big logs. Raises StackError when a child that is not restarted died."""
        now = time.monotonic()
        for component in self.components:
            proc = component.proc
            if proc is not None and proc.poll() is not None:
                self._on_exit(component, proc.returncode, now)
            elif proc is not None and self._not_consuming(component, now):
                self._note(component, f"not consuming for over {self.alive_max_age:.0f}s; killed")
                self._kill(component)
                self._on_exit(component, component.proc.returncode, now)
            if component.restart_at is not None and now >= component.restart_at:
                component.restart_at = None
                component.restarts += 1
                self._note(component, f"restarting (restart #{component.restarts})")
                self._start(component)
        if now - self._rotated_at >= ROTATE_CHECK_SECONDS:
            self.rotate_logs()

    def _on_exit(self, component: Component, code: int | None, now: float) -> None:
        component.proc = None
        tail = log_tail(component.log) if component.log else ""
        if not component.restart:
            raise StackError(
                f"{component.name} exited unexpectedly (code {code}); "
                f"last lines of {component.log}:\n{tail}"
            )
        if now - component.started_at >= STABLE_SECONDS:
            component.backoff = 0.0
        component.backoff = (
            min(component.backoff * 2, RESTART_BACKOFF_MAX_SECONDS)
            if component.backoff
            else RESTART_BACKOFF_FIRST_SECONDS
        )
        component.restart_at = now + component.backoff
        self._note(
            component,
            f"exited (code {code}); restarting in {component.backoff:.0f}s",
            detail=f"; last lines of {component.log}:\n{tail}",
        )

    def _not_consuming(self, component: Component, now: float) -> bool:
        if not (component.alive_node and self.alive_dir):
            return False
        if now - component.started_at < self.alive_max_age:
            return False  # give a new worker time to connect and start consuming
        from trace_tasks.liveness import alive_path

        try:
            age = time.time() - alive_path(component.alive_node, self.alive_dir).stat().st_mtime
        except FileNotFoundError:
            return True
        return age > self.alive_max_age

    def _note(self, component: Component, message: str, detail: str = "") -> None:
        """A supervision event, in the supervisor's output (with `detail`) and in the
        component's own log."""
        self.say(f"trace lite: {component.name} {message}{detail}")
        if component.log:
            with component.log.open("a") as out:
                out.write(f"--- {datetime.now(UTC).isoformat()} supervisor: {message}\n")

    def _start(self, component: Component) -> None:
        """Start a child in its own session (Ctrl-C reaches only the supervisor, which then
        stops the children itself)."""
        log = component.log = self.log_dir / f"{component.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:  # O_APPEND: rotation can truncate under the child
            out.write(f"--- {datetime.now(UTC).isoformat()} {shlex.join(component.argv)}\n")
            out.flush()
            component.proc = subprocess.Popen(
                component.argv,
                env={**self.env, "PYTHONUNBUFFERED": "1"},
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        component.started_at = time.monotonic()

    # --- log rotation ------------------------------------------------------------------------

    def rotate_logs(self) -> None:
        """Size-based copytruncate of every `*.log` in the log directory: over
        TRACE_LITE_LOG_MAX_BYTES, `x.log` is copied to `x.log.1` (older backups shift up to
        TRACE_LITE_LOG_BACKUPS) and truncated in place. Children keep their open file (opened
        for append, so they write on at the new end); lines written between the copy and the
        truncation are lost, the price of not signalling every program to reopen its log."""
        self._rotated_at = time.monotonic()
        if not self.log_dir.is_dir():
            return
        for log in sorted(self.log_dir.glob("*.log")):
            with contextlib.suppress(FileNotFoundError):
                if log.stat().st_size > self.log_max_bytes:
                    rotate_log(log, backups=self.log_backups)

    # --- stopping ----------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Stop in `stop_order` groups: SIGTERM a group (Celery workers finish or hand back
        the task in hand), wait for it, SIGKILL whatever is left of it, then the next group."""
        for order in sorted({c.stop_order for c in self.components}):
            group = [c for c in self.components if c.stop_order == order]
            running = [c for c in group if c.proc and c.proc.poll() is None]
            for component in running:
                component.proc.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            for component in running:
                try:
                    component.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.say(
                        f"{component.name} did not stop in {STOP_TIMEOUT_SECONDS:.0f} s; killing it"
                    )
            for component in group:
                self._kill(component)

    def kill_all(self) -> None:
        """SIGKILL every child at once (no warm shutdown), e.g. after a test."""
        for component in self.components:
            self._kill(component)

    def _kill(self, component: Component) -> None:
        """SIGKILL what is left of a child's process group (prefork pool processes too)."""
        if component.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(component.proc.pid, signal.SIGKILL)
        component.proc.wait()


def rotate_log(log: Path, *, backups: int) -> None:
    for index in range(backups - 1, 0, -1):
        older = log.with_name(f"{log.name}.{index}")
        if older.exists():
            older.replace(log.with_name(f"{log.name}.{index + 1}"))
    if backups > 0:
        shutil.copyfile(log, log.with_name(f"{log.name}.1"))
    with log.open("r+") as handle:
        handle.truncate(0)


def worker_node(queue: str) -> str:
    """The node name `-n <queue>@%h` gives a worker."""
    return f"{queue}@{socket.gethostname()}"


def _die_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def log_tail(path: Path | None, lines: int = 10) -> str:
    if path is None or not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 16_384))
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])
