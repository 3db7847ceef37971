"""The Lite stack: `trace lite up` resolves services, migrates, bootstraps and supervises the web
server, beat, one Celery worker per queue and Flower as child processes (trace_web.lite.supervisor
restarts them and rotates their logs); status/down/env read the state it leaves in the home
directory (lite.env, lite.json, logs/).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trace_web.lite import services
from trace_web.lite.envfile import env_file_path, read_env_file, write_env_file
from trace_web.lite.supervisor import (
    STOP_TIMEOUT_SECONDS,
    Component,
    StackError,
    Supervisor,
    log_tail,
    worker_node,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MANAGE = [sys.executable, str(REPO_ROOT / "manage.py")]
CELERY = [sys.executable, "-m", "celery", "-A", "trace_tasks.celery_app"]
BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Worker processes per batch queue: enough to see concurrency on a laptop, small enough to fit
# one. The stream queue's worker is a thread pool instead (see worker_components).
WORKER_CONCURRENCY = {"platform": 2, "udf": 1, "delivery": 1, "dispatcher": 1}
# Slots of the stream worker: one per running always_on source. Threads are created as
# sources start, so unused slots cost nothing; the bound is the database connections each
# source holds (about three).
STREAM_SLOTS = 200
# Generated once per home (bytes of randomness); the admin password is shorter: people type it.
SECRET_BYTES = {
    "TRACE_SECRET_KEY": 48,
    "TRACE_TASK_TOKEN_SECRET": 48,
    "TRACE_LITE_ADMIN_PASSWORD": 12,
}
ADMIN_USERNAME = "admin"
DEMO_ORG = "demo"
DEMO_DIR = REPO_ROOT / "deploy" / "demo"
DEVCHAIN_POOL_ENV = "TRACE_RPC_POOL_DEVCHAIN"
# The alert demo (deploy/demo/alerts.yaml): its receiver component, channel, alert and the
# address whose incoming transfers it watches.
RECEIVER = "alert-receiver"
DEMO_CHANNEL = "demo-webhook"
DEMO_ALERT = "big-transfer-to-watched"
WATCHED = "0x000000000000000000000000000000000000dead"
READY_TIMEOUT_SECONDS = 90.0
SUPERVISE_INTERVAL_SECONDS = 0.5


# --- up --------------------------------------------------------------------------------------


def up(*, home: Path, port: int, flower_port: int, demo: bool) -> int:
    """Run the stack in the foreground until Ctrl-C/SIGTERM (exit 0) or the chain dies (exit 1);
    other children that die are restarted."""
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up even when piped to a file
    home.mkdir(parents=True, exist_ok=True)
    _refuse_if_running(home)
    for wanted in (port, flower_port):
        if services.port_in_use(wanted):
            raise StackError(f"port {wanted} is in use; pick another with --port/--flower-port")
    _install_stop_signals()
    devchain_port = _devchain_port()
    components = _devchain_components(home, devchain_port) + _components(port, flower_port)
    # The alert demo sends a transaction from a dev account: only on Lite's own anvil.
    receiver_port = services.free_port() if demo and devchain_port is not None else None
    components += _receiver_components(receiver_port)
    supervisor: Supervisor | None = None
    try:
        env = _prepare(home, devchain_port, flower_port=flower_port)
        os.environ.update(env)  # the supervisor reads its own settings like its children
        _setup(env, home)
        supervisor = Supervisor(
            components,
            env=env,
            log_dir=home / "logs",
            cwd=REPO_ROOT,
            alive_dir=Path(env["TRACE_WORKER_ALIVE_DIR"]),
        )
        supervisor.start_all()
        _write_state(home, components, env)
        _wait_web_ready(supervisor, port)
        print(render_state(json.loads(_state_path(home).read_text())))
        print("Stop with Ctrl-C, or `trace lite down` from another shell.\n")
        if demo:
            _run_demo(env, home=home, receiver_port=receiver_port)
        return _supervise(supervisor, home, env)
    except KeyboardInterrupt:
        print("\nStopping Trace Lite...")
        return 0
    except StackError as exc:
        print(f"\ntrace lite: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # let shutdown finish; SIGKILL still works
        if supervisor is not None:
            supervisor.stop_all()  # workers and beat first, then the chain, web and Flower
        services.stop_embedded()
        _state_path(home).unlink(missing_ok=True)
        print("Trace Lite stopped.")


def _install_stop_signals() -> None:
    """Ctrl-C, SIGTERM and a closed terminal all mean "stop"; SIGINT is set explicitly because a
    shell starts background jobs with it ignored, and `nohup`'s ignored SIGHUP is respected."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _raise_interrupt)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _refuse_if_running(home: Path) -> None:
    state = read_state(home)
    if state and supervisor_alive(state):
        raise StackError(
            f"a Lite stack is already running from {home} (pid {state['supervisor_pid']}); "
            "see `trace lite status` or stop it with `trace lite down`"
        )


def _devchain_port() -> int | None:
    """A port for the local anvil dev chain, or None when an RPC pool is configured (a real
    chain) or anvil is not installed (then the chain part of the demo is skipped)."""
    from trace_chain import devchain

    if os.environ.get(DEVCHAIN_POOL_ENV):
        return None
    try:
        devchain.anvil_path()
    except devchain.AnvilNotInstalled as exc:
        print(f"dev chain: skipped ({exc})")
        return None
    return services.free_port()


def _devchain_components(home: Path, port: int | None) -> list[Component]:
    """anvil mining a block a second (state kept in the home between runs) and a process that
    keeps its blocks holding transactions and logs."""
    if port is None:
        return []
    from trace_chain import devchain

    url = f"http://{services.LOOPBACK}:{port}"
    node = devchain.Anvil(block_time=1, extra_args=["--state", str(home / "anvil-state.json")])
    traffic = [sys.executable, "-m", "trace_chain.devchain", "traffic", url]
    return [
        Component("anvil", node.argv(port), url, restart=False),
        Component("chain-traffic", traffic),
    ]


def _receiver_components(port: int | None) -> list[Component]:
    """The demo's webhook receiver on loopback (`trace alerts receive`), verifying what it gets
    with the demo channel's secret; its log is where the demo looks for the alert."""
    if port is None:
        return []
    argv = [*MANAGE, "alerts", "receive", "--port", str(port)]
    argv += ["--org", DEMO_ORG, "--channel", DEMO_CHANNEL]
    return [Component(RECEIVER, argv, f"http://{services.LOOPBACK}:{port}/")]


def _prepare(
    home: Path, devchain_port: int | None = None, *, flower_port: int = 5555
) -> dict[str, str]:
    """Resolve services, create both databases and persist URLs + secrets to lite.env."""
    previous = read_env_file(env_file_path(home))
    # Values exported from our own lite.env (`eval "$(trace lite env)"`) are not configuration:
    # they may point at an embedded Redis port from an earlier run.
    for key, value in previous.items():
        if os.environ.get(key) == value:
            del os.environ[key]
    print("Resolving Postgres and Redis...")
    pg_server = services.ensure_postgres(home, allow_loopback_probe=False)
    state_url = os.environ.get("TRACE_STATE_DB_URL") or services.database_url(
        pg_server, "trace_state"
    )
    data_url = os.environ.get("TRACE_DATA_DB_URL") or services.database_url(pg_server, "trace_data")
    for url in (state_url, data_url):
        services.ensure_databases(services.server_url(url), [urlsplit(url).path.lstrip("/")])
    broker_url = os.environ.get("TRACE_BROKER_URL") or services.redis_db_url(
        services.ensure_redis(home, allow_loopback_probe=False), 0
    )
    values = {
        "TRACE_HOME": str(home),
        "TRACE_STATE_DB_URL": state_url,
        "TRACE_DATA_DB_URL": data_url,
        "TRACE_BROKER_URL": broker_url,
        "TRACE_OBJECT_STORE_URL": os.environ.get("TRACE_OBJECT_STORE_URL")
        or (home / "objects").as_uri(),
        "TRACE_WORKER_ALIVE_DIR": os.environ.get("TRACE_WORKER_ALIVE_DIR") or str(home / "alive"),
        # The web's front page links Flower where this stack runs it (--flower-port).
        "TRACE_FLOWER_URL": os.environ.get("TRACE_FLOWER_URL")
        or f"http://{services.LOOPBACK}:{flower_port}/",
        # Lite's alert receivers (the demo's, a developer's) listen on loopback.
        "TRACE_DELIVERY_ALLOW_PRIVATE": os.environ.get("TRACE_DELIVERY_ALLOW_PRIVATE") or "true",
    }
    if devchain_port is not None:
        values[DEVCHAIN_POOL_ENV] = f"http://{services.LOOPBACK}:{devchain_port}"
    for name, size in SECRET_BYTES.items():
        values[name] = os.environ.get(name) or previous.get(name) or secrets.token_urlsafe(size)
    write_env_file(env_file_path(home), values)
    return {**os.environ, **values, "DJANGO_SETTINGS_MODULE": "trace_web.settings"}


def _setup(env: dict[str, str], home: Path) -> None:
    """Migrate both databases and create the demo org and admin user (all idempotent)."""
    (home / "objects").mkdir(exist_ok=True)
    print("Migrating the state DB...")
    _run_logged([*MANAGE, "migrate", "--noinput"], env, home / "logs" / "setup.log")
    print("Migrating the data DB...")
    from trace_chain.db import migrate_data_db

    try:
        migrate_data_db(env["TRACE_DATA_DB_URL"])
    except Exception as exc:
        raise StackError(f"data DB migration failed: {exc}") from exc
    bootstrap = [*MANAGE, "lite_bootstrap", "--org", DEMO_ORG, "--username", ADMIN_USERNAME]
    if subprocess.run(bootstrap, env=env, cwd=REPO_ROOT).returncode:
        raise StackError("manage.py lite_bootstrap failed (output above)")


def _run_logged(argv: list[str], env: dict[str, str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        result = subprocess.run(argv, env=env, cwd=REPO_ROOT, stdout=out, stderr=out)
    if result.returncode:
        raise StackError(f"{shlex.join(argv[1:])} failed; see {log}\n{log_tail(log)}")


def _components(port: int, flower_port: int) -> list[Component]:
    # --insecure: runserver serves the admin's static files without DEBUG (loopback only).
    web = [*MANAGE, "runserver", f"{services.LOOPBACK}:{port}", "--noreload", "--insecure"]
    flower = [*CELERY, "flower", f"--address={services.LOOPBACK}", f"--port={flower_port}"]
    return [
        Component("web", web, f"http://{services.LOOPBACK}:{port}/"),
        *celery_components(),
        Component("flower", flower, f"http://{services.LOOPBACK}:{flower_port}/"),
    ]


def celery_components() -> list[Component]:
    """Beat and one worker per queue, stopped before everything else (stop_order 0)."""
    beat = [*CELERY, "beat", "--scheduler", BEAT_SCHEDULER, "--loglevel", "INFO"]
    return [Component("beat", beat, stop_order=0), *worker_components()]


def worker_components() -> list[Component]:
    """One worker per queue. Batch queues get prefork pools of a few processes; the stream
    queue a thread pool with a slot per always_on source, so long-running sources never take
    the slots batch work needs."""
    from trace_tasks.queues import Queue

    components = []
    for queue in Queue:
        argv = [*CELERY, "worker", "-Q", queue.value, "-n", f"{queue.value}@%h", "-E"]
        if queue is Queue.STREAM:
            argv += ["--pool", "threads", "--concurrency", str(STREAM_SLOTS)]
        else:
            argv += ["--concurrency", str(WORKER_CONCURRENCY[queue.value])]
        components.append(
            Component(
                f"worker-{queue.value}",
                [*argv, "--loglevel", "INFO"],
                stop_order=0,
                alive_node=worker_node(queue.value),
            )
        )
    return components


def _wait_web_ready(supervisor: Supervisor, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    url = f"http://{services.LOOPBACK}:{port}/admin/login/"
    print("Waiting for the web server...")
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            with urllib.request.urlopen(url, timeout=2):  # fixed loopback http URL
                return
        except urllib.error.HTTPError:
            return  # it answers; the page itself is not our concern here
        except OSError:
            time.sleep(0.5)
    raise StackError(f"the web server did not answer on {url} in {READY_TIMEOUT_SECONDS:.0f} s")


def _run_demo(env: dict[str, str], *, home: Path, receiver_port: int | None = None) -> None:
    """Deploy the demo: two noop jobs (one run now) and, with a dev chain or a `devchain` RPC
    pool, a tip follower into the hot tables plus a chain_sync backfilling it into Parquet;
    on Lite's own anvil also an alert whose webhook goes to the local receiver, and a
    transaction it matches."""
    steps = [
        ["sync_dag", str(DEMO_DIR / "noop_dag.yaml"), "--org", DEMO_ORG, "--activate"],
        ["run_job", "noop-demo", "extract", "--org", DEMO_ORG],
    ]
    if env.get(DEVCHAIN_POOL_ENV):
        steps += [
            ["sync_dag", str(DEMO_DIR / "chain_dag.yaml"), "--org", DEMO_ORG, "--activate"],
            [
                "sync_dag",
                str(DEMO_DIR / "chain_integrity_dag.yaml"),
                "--org",
                DEMO_ORG,
                "--activate",
            ],
            ["chain_sync", "apply", str(DEMO_DIR / "chain_sync.yaml"), "--org", DEMO_ORG],
        ]
    if receiver_port is not None:
        alerts = home / "demo-alerts.yaml"  # deploy/demo/alerts.yaml with the receiver's URL
        url = f"http://{services.LOOPBACK}:{receiver_port}/hook"
        alerts.write_text((DEMO_DIR / "alerts.yaml").read_text().replace("${RECEIVER_URL}", url))
        steps.append(["alerts", "apply", str(alerts), "--org", DEMO_ORG])
    for step in steps:
        result = subprocess.run(
            [*MANAGE, *step], env=env, cwd=REPO_ROOT, capture_output=True, text=True
        )
        output = (result.stdout + result.stderr).strip()
        print(f"demo: trace {shlex.join(step)}" + (" -> failed" if result.returncode else ""))
        if output:
            print("  " + output.replace("\n", "\n  "))
        if result.returncode:
            print("demo: stopped (the stack keeps running)")
            return
    if env.get(DEVCHAIN_POOL_ENV):
        print(
            "\ndemo: the chain is followed into hot_blocks/hot_transactions/hot_logs (data DB),"
            " compacted to Parquet as it finalizes and backfilled to Parquet under"
            " TRACE_OBJECT_STORE_URL; watch it with\n"
            f"  trace chain_sync status --job devchain-history --org {DEMO_ORG} --watch\n"
            "demo: once the first range is compacted, a query over the whole chain follows."
        )
        threading.Thread(target=_demo_query, args=(env,), name="demo-query", daemon=True).start()
        threading.Thread(
            target=_demo_integrity, args=(env,), name="demo-integrity", daemon=True
        ).start()
    if receiver_port is not None:
        print(
            f"demo: alert {DEMO_ALERT!r} watches transfers of 1 ETH or more to {WATCHED}; its"
            f" webhooks go to the receiver on port {receiver_port} (logs/{RECEIVER}.log)."
        )
        threading.Thread(
            target=_demo_alert, args=(env, home), name="demo-alert", daemon=True
        ).start()
    print()


DEMO_SQL = (
    "SELECT count(*) AS blocks, min(block_number) AS first, max(block_number) AS last, "
    "sum(gas_used) AS gas FROM blocks"
)


def _demo_query(env: dict[str, str], *, wait_seconds: float = 180.0) -> None:
    """Wait for the first compacted range (a live cold segment), then show one query that
    reads the whole chain: cold below the line, hot above it."""
    import sqlalchemy as sa

    from trace_chain.cold_segments import LIVE, cold_segments
    from trace_chain.db import create_data_engine

    engine = create_data_engine(env["TRACE_DATA_DB_URL"])
    deadline = time.monotonic() + wait_seconds
    line = None
    try:
        while time.monotonic() < deadline and line is None:
            time.sleep(2)
            with contextlib.suppress(sa.exc.SQLAlchemyError), engine.connect() as conn:
                line = conn.execute(
                    sa.select(sa.func.max(cold_segments.c.range_end)).where(
                        cold_segments.c.state == LIVE
                    )
                ).scalar()
    finally:
        engine.dispose()
    if line is None:
        print(f"demo: nothing compacted within {wait_seconds:.0f} s; see logs/worker-platform.log")
        return
    step = ["query", DEMO_SQL, "--org", DEMO_ORG]
    result = subprocess.run(
        [*MANAGE, *step], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    print(f"\ndemo: blocks [0, {line}) are cold Parquet now, the rest hot; one query reads both:")
    print(f"demo: trace {shlex.join(step)}")
    print("  " + (result.stdout + result.stderr).strip().replace("\n", "\n  "))


def _demo_integrity(env: dict[str, str], *, wait_seconds: float = 300.0) -> None:
    """Wait for the first integrity check (deploy/demo/chain_integrity_dag.yaml, on a cron)
    that found compacted blocks to check, and show its result."""
    import sqlalchemy as sa

    from trace_chain.db import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(env["TRACE_STATE_DB_URL"]), poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + wait_seconds
    row = None
    try:
        while row is None and time.monotonic() < deadline:
            time.sleep(2)
            with contextlib.suppress(sa.exc.SQLAlchemyError), engine.connect() as conn:
                row = conn.execute(
                    sa.text(
                        "SELECT chain_id, range_start, range_end, blocks_checked, mismatches, "
                        "status FROM datasets_integritycheck WHERE blocks_checked > 0 "
                        "ORDER BY id LIMIT 1"
                    )
                ).first()
    finally:
        engine.dispose()
    if row is None:
        print(f"demo: no integrity check within {wait_seconds:.0f} s; see logs/")
        return
    chain_id, start, end, checked, mismatches, status = row
    print(
        f"demo: integrity check of chain {chain_id} blocks [{start}, {end}): {status}, "
        f"{checked} blocks checked, {mismatches} mismatches (GET /v1/integrity-checks)"
    )


def _demo_alert(env: dict[str, str], home: Path, *, wait_seconds: float = 180.0) -> None:
    """Once the alert job evaluates blocks, send 1.5 ETH to the watched address, then show the
    webhook the receiver got for that transaction and how long after the block it arrived."""
    from trace_chain import devchain
    from trace_chain.rpc import RpcPool

    deadline = time.monotonic() + wait_seconds
    while not _alert_job_evaluating(env["TRACE_STATE_DB_URL"]):
        if time.monotonic() > deadline:
            print(f"demo: the alert job did not start within {wait_seconds:.0f} s; see logs/")
            return
        time.sleep(1)
    url = env[DEVCHAIN_POOL_ENV]
    sender = devchain.dev_accounts(url)[-1]  # the traffic process sends from the first ones
    with RpcPool("demo", [url]) as rpc:
        tx = {"from": sender, "to": WATCHED, "value": hex(3 * 10**18 // 2)}
        tx_hash = rpc.call("eth_sendTransaction", [tx]).lower()
        print(f"\ndemo: sent 1.5 ETH from {sender} to {WATCHED} in {tx_hash}")
        receipt = None
        while receipt is None and time.monotonic() < deadline:
            time.sleep(0.2)
            receipt = rpc.call("eth_getTransactionReceipt", [tx_hash])
        mined_at = time.monotonic()
    log = home / "logs" / f"{RECEIVER}.log"
    while time.monotonic() < deadline:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        got = next((line for line in lines if tx_hash in line), None)
        if got is not None:
            after = time.monotonic() - mined_at
            print(f"demo: webhook received {after:.1f} s after the block was mined:\n  {got}")
            return
        time.sleep(0.2)
    print(f"demo: no webhook for {tx_hash} within {wait_seconds:.0f} s; see logs/")


def _alert_job_evaluating(state_db_url: str) -> bool:
    """Whether the demo's alert job has a cursor on the follower's output: from then on every
    new block is evaluated (a new alert job starts at the tip, it does not backfill)."""
    import sqlalchemy as sa

    from trace_chain.db import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(state_db_url), poolclass=sa.pool.NullPool)
    try:
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT 1 FROM datasets_datasetcursor WHERE consumer_dag = :dag "
                        "AND consumer_job = 'alert' AND position > 0"
                    ),
                    {"dag": "chain-demo"},
                ).first()
            )
        return False
    finally:
        engine.dispose()


def _supervise(supervisor: Supervisor, home: Path, env: dict[str, str]) -> int:
    """Watch the children until stopped; a restarted child gets a new pid in lite.json."""
    while True:
        pids = [c.proc.pid if c.proc else None for c in supervisor.components]
        supervisor.check()  # raises StackError when the chain dies
        if pids != [c.proc.pid if c.proc else None for c in supervisor.components]:
            _write_state(home, supervisor.components, env)
        time.sleep(SUPERVISE_INTERVAL_SECONDS)


def _log_name(component: Component) -> str:
    return f"logs/{component.name}.log"


# --- state: lite.json ------------------------------------------------------------------------


def _state_path(home: Path) -> Path:
    return home / "lite.json"


def read_state(home: Path) -> dict | None:
    path = _state_path(home)
    return json.loads(path.read_text()) if path.exists() else None


def supervisor_alive(state: dict) -> bool:
    """Whether lite.json's supervisor still runs. A lite.json left by a killed supervisor may name
    a pid since reused by another program, which `down` must not signal."""
    pid = state["supervisor_pid"]
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        return b"lite" in cmdline.read_bytes()
    return services.pid_alive(pid)


def _write_state(home: Path, components: list[Component], env: dict[str, str]) -> None:
    web_url = next(c.url for c in components if c.name == "web")
    rows = {
        c.name: {
            "pid": c.proc.pid if c.proc else None,
            "url": c.url,
            "log": _log_name(c),
            "restarts": c.restarts,
            "restarting": c.proc is None,  # died; the supervisor starts it after a pause
        }
        for c in components
    }
    embedded = services.embedded_homes()
    rows["postgres"] = {
        "pid": services.postgres_pid(home) if "postgres" in embedded else None,
        "url": redact(env["TRACE_STATE_DB_URL"]),
        "log": "pg/log" if "postgres" in embedded else "",
    }
    rows["redis"] = {
        "pid": services.redis_pid(home) if "redis" in embedded else None,
        "url": redact(env["TRACE_BROKER_URL"]),
        "log": "redis/redis.log" if "redis" in embedded else "",
    }
    state = {
        "supervisor_pid": os.getpid(),
        "home": str(home),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "admin_url": f"{web_url}admin/",
        "api_docs_url": f"{web_url}v1/schema/docs/",
        "components": rows,
    }
    _state_path(home).write_text(json.dumps(state, indent=2) + "\n")


def render_state(state: dict) -> str:
    """The table `up` prints once running and `status` prints on demand."""
    running = "running" if supervisor_alive(state) else "not running"
    lines = [
        f"Trace Lite  home {state['home']}  supervisor pid {state['supervisor_pid']} ({running})",
        f"  {'component':<18} {'pid':>8}  {'state':<10} url / log",
    ]
    for name, row in state["components"].items():
        pid = row["pid"]
        if row.get("restarting"):
            alive = "restarting"
        elif pid is None:
            alive = "external"
        else:
            alive = "alive" if services.pid_alive(pid) else "dead"
        where = row["url"] or ""
        log = f"  [{row['log']}]" if row["log"] else ""
        restarts = f"  (restarted {row['restarts']}x)" if row.get("restarts") else ""
        lines.append(f"  {name:<18} {pid or '-':>8}  {alive:<10} {where}{log}{restarts}")
    lines += [
        f"  admin:    {state['admin_url']}  (user {ADMIN_USERNAME}, password in lite.env)",
        f"  API docs: {state['api_docs_url']}",
    ]
    return "\n".join(lines)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# --- status, down, env -----------------------------------------------------------------------


def status(*, home: Path) -> int:
    state = read_state(home)
    if state is None:
        print(f"Trace Lite is not running (no {_state_path(home)}).")
        return 1
    print(render_state(state))
    rows = state["components"].values()
    healthy = supervisor_alive(state) and all(
        not row.get("restarting") and (row["pid"] is None or services.pid_alive(row["pid"]))
        for row in rows
    )
    return 0 if healthy else 1


def down(*, home: Path) -> int:
    """Ask the supervisor to stop (it stops its children and services); if it is gone, stop
    embedded services it left behind."""
    state = read_state(home)
    if state and supervisor_alive(state):
        pid = state["supervisor_pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS + 60
        while services.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if services.pid_alive(pid):
            print(f"supervisor {pid} did not stop in time", file=sys.stderr)
            return 1
        print("Trace Lite stopped.")
        return 0
    services.stop_redis(home)
    services.stop_postgres(home)
    _state_path(home).unlink(missing_ok=True)
    print("Trace Lite was not running; stopped any embedded services left behind.")
    return 0


def env_exports(*, home: Path) -> int:
    values = read_env_file(env_file_path(home))
    if not values:
        print(f"# no {env_file_path(home)} yet: run `trace lite up` first", file=sys.stderr)
        return 1
    for key, value in sorted(values.items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0
