"""What the hostile handlers aim at, set up by the test on loopback and in directories outside
the sandbox's temp dir, and how the test tells afterwards whether any of it was reached: a
secret in the test process's environment and in a `.env` file, listeners (TCP v4 and v6,
pathname and abstract unix, UDP) that count connections, a Redis key and a Postgres table a
handler would create, a victim process, the anvil node's head, files it would write."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

import trace_web

PROJECT = Path(trace_web.__file__).resolve().parents[1]
SETTINGS_FILE = PROJECT / "trace_web" / "settings" / "db.py"
SECRET_VAR = "TRACE_HOSTILE_SECRET"
REDIS_DB = 12
# A slot of the corpus's own (its uid), past the sandbox tests' per-xdist-worker slots, so a
# process left under it is one of the corpus's and nobody else's.
HOSTILE_SLOT = 8 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def _first_line(path: Path) -> str:
    """A line of the file that reads the same in JSON (no quotes or backslashes)."""
    return next(
        line
        for line in path.read_text().splitlines()
        if len(line.strip()) > 12 and not set(line) & set("\"\\'")
    )


@dataclass
class Targets:
    token: str
    secret: str
    outside: Path  # a directory outside the sandbox's temp dir, open to every uid
    anvil_url: str
    home_file: Path
    listeners: dict[str, socket.socket] = field(default_factory=dict)
    victim: subprocess.Popen | None = None
    anvil_head: int = 0

    @property
    def params(self) -> dict:
        """What a handler is told about its targets (never the secret's value)."""
        port = self.anvil_url.rsplit(":", 1)[1]
        return {
            "token": self.token,
            "secret_var": SECRET_VAR,
            "tcp4": self.listeners["tcp4"].getsockname()[1],
            "tcp6": self.listeners["tcp6"].getsockname()[1],
            "udp": self.listeners["udp"].getsockname()[1],
            "unix": str(self.outside / "listener.sock"),
            "abstract": f"trace-hostile-{self.token}",
            "redis_db": REDIS_DB,
            "outside": str(self.outside),
            "dotenv": str(self.outside / ".env"),
            "project_file": str(PROJECT / "pyproject.toml"),
            "settings_file": str(SETTINGS_FILE),
            "home": str(self.home_file.parent),
            "victim": self.victim.pid if self.victim else 0,
            "anvil_port": int(port),
        }

    # What was reached -------------------------------------------------------------------

    def reached(self, text: str) -> list[str]:
        """Every target the runs so far reached, by what they printed, returned or logged
        (`text`) and by the targets' own state; each check resets its target."""
        found = [name for name, loot in self._loot().items() if loot in text]
        for name in ("tcp4", "tcp6", "unix", "abstract"):
            with contextlib.suppress(BlockingIOError):
                conn, _ = self.listeners[name].accept()
                conn.close()
                found.append(name)
        with contextlib.suppress(BlockingIOError):
            self.listeners["udp"].recvfrom(65536)
            found.append("udp")
        if self._redis().delete(f"trace-hostile-{self.token}"):
            found.append("redis")
        if self._pg_table_dropped():
            found.append("postgres")
        if self.victim is not None and self.victim.poll() is not None:
            found.append("victim")
            self.victim = _victim()
        if self._anvil_head() != self.anvil_head:
            found.append("anvil")
            self.anvil_head = self._anvil_head()
        for path in self.outside.glob("written-*"):
            found.append("write_outside")
            path.unlink()
        if leftover := sandbox_processes():
            found.append(f"processes left: {leftover}")
        return found

    def _loot(self) -> dict[str, str]:
        return {
            "secret": self.secret,
            "dotenv": f"dotenv-{self.token}",
            "home": f"home-{self.token}",
            "project_file": _first_line(PROJECT / "pyproject.toml"),
            "settings_file": _first_line(SETTINGS_FILE),
            "shadow": Path("/etc/shadow").read_text().splitlines()[0],
            "passwd": "root:x:0:0",
            "database_url": os.environ.get("TRACE_STATE_DB_URL", "postgresql://"),
            "trace_web": "imported-trace_web",
            "forged": f"forged-{self.token}",
        }

    def _redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)

    def _pg_table_dropped(self) -> bool:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as conn:
            table = f"hostile_{self.token}"
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()[0]
            if exists:
                conn.execute(f'DROP TABLE "{table}"')
            return bool(exists)

    def _anvil_head(self) -> int:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}).encode()
        request = urllib.request.Request(  # noqa: S310 - the test's own anvil on loopback
            self.anvil_url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return int(json.load(answer)["result"], 16)

    def close(self) -> None:
        self.reached("")  # drop a table, a key or files a control run made
        for pid in sandbox_processes():  # so one case's leftovers do not fail the next
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for sock in self.listeners.values():
            sock.close()
        if self.victim is not None and self.victim.poll() is None:
            self.victim.kill()
            self.victim.wait()
        self.home_file.unlink(missing_ok=True)
        shutil.rmtree(self.outside, ignore_errors=True)


def sandbox_processes() -> list[int]:
    """Pids still running (not zombies, which are dead and wait only to be reaped) under
    this test's sandbox slot uid."""
    from trace_tasks.sandbox import uid_base

    uid = uid_base() + HOSTILE_SLOT
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            status = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
            if int(status["Uid"].split()[0]) == uid and status["State"].split()[0] != "Z":
                pids.append(int(entry.name))
    return pids


def _victim() -> subprocess.Popen:
    """A process of the worker's uid that no handler may signal (its own session)."""
    return subprocess.Popen(["sleep", "600"], start_new_session=True)


def _listener(family: int, kind: int, address) -> socket.socket:
    sock = socket.socket(family, kind)
    sock.bind(address)
    if kind == socket.SOCK_STREAM:
        sock.listen(8)
    sock.setblocking(False)
    return sock


def targets_open(anvil_url: str) -> Targets:
    token = secrets.token_hex(8)
    outside = Path(tempfile.mkdtemp(prefix="hostile-outside-"))
    outside.chmod(0o777)  # only the sandbox, not file modes, keeps a slot's uid out
    (outside / ".env").write_text(f"DATABASE_PASSWORD=dotenv-{token}\n")
    (outside / ".env").chmod(0o644)
    home_file = Path.home() / f".trace-hostile-{token}"
    home_file.write_text(f"home-{token}\n")
    home_file.chmod(0o644)
    targets = Targets(
        token=token,
        secret=f"s3cret-{token}",
        outside=outside,
        anvil_url=anvil_url,
        home_file=home_file,
    )
    targets.listeners = {
        "tcp4": _listener(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)),
        "tcp6": _listener(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0)),
        "udp": _listener(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0)),
        "unix": _listener(socket.AF_UNIX, socket.SOCK_STREAM, str(outside / "listener.sock")),
        "abstract": _listener(
            socket.AF_UNIX, socket.SOCK_STREAM, f"\0trace-hostile-{token}".encode()
        ),
    }
    (outside / "listener.sock").chmod(0o777)
    targets.victim = _victim()
    targets.anvil_head = targets._anvil_head()
    return targets
