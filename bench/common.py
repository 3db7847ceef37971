"""Shared set-up for the benchmarks: services (configured, loopback or embedded), a migrated
data DB, and the plain web3 baseline that writes the same hot rows row by row."""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# Names a bench's databases and broker db take; the environment can move them, so two people
# benchmarking on one machine do not recreate each other's databases.
STATE_DB = os.environ.get("TRACE_BENCH_STATE_DB", "trace_bench_state")
DATA_DB = os.environ.get("TRACE_BENCH_DATA_DB", "trace_bench_data")
BROKER_DB = int(os.environ.get("TRACE_BENCH_BROKER_DB", "14"))


def platform(home: Path | None = None) -> Path:
    """Point this process (and the Celery processes it starts) at a bench state DB, broker db
    and data DB (STATE_DB, BROKER_DB, DATA_DB), migrate both and set Django up. Returns the
    bench's home directory."""
    from trace_web.lite import services

    home = home or Path(tempfile.mkdtemp(prefix="trace-bench-"))
    pg = services.ensure_postgres(home, allow_loopback_probe=True)
    redis_server = services.ensure_redis(home, allow_loopback_probe=True)
    _recreate(pg, STATE_DB)  # every run starts from an empty control plane
    os.environ.update(
        TRACE_STATE_DB_URL=services.database_url(pg, STATE_DB),
        TRACE_BROKER_URL=services.redis_db_url(redis_server, BROKER_DB),
        TRACE_SECRET_KEY=os.environ.get("TRACE_SECRET_KEY", "bench-" + "x" * 40),
        TRACE_TASK_TOKEN_SECRET=os.environ.get("TRACE_TASK_TOKEN_SECRET", "bench-" + "y" * 40),
        TRACE_HOME=str(home),
        DJANGO_SETTINGS_MODULE="trace_web.settings",
    )
    import django
    import redis

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(settings.TRACE_BROKER_URL).flushdb()
    return home


def _recreate(server: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    from trace_web.lite import services

    with psycopg.connect(services.database_url(server, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def start_celery(name: str, args: list[str], home: Path) -> subprocess.Popen:
    """Start `celery -A trace_tasks.celery_app ARGS` with its log under home."""
    log = (home / f"{name}.log").open("w")
    argv = [sys.executable, "-m", "celery", "-A", "trace_tasks.celery_app", *args]
    return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def wait_for_workers(count: int = 1, timeout: float = 60) -> None:
    from trace_tasks.celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    raise SystemExit("Celery workers did not start; see their logs in the bench home")


def wait_until(predicate, timeout: float = 600, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(interval)


def stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # e.g. beat on a loaded machine: do not lose the figures
            proc.kill()
            proc.wait(timeout=30)


def data_db(name: str = DATA_DB):
    """A migrated, empty data DB for a benchmark; returns the SQLAlchemy engine."""
    import sqlalchemy as sa

    from trace_chain.db import create_data_engine, migrate_data_db
    from trace_chain.hot_schema import metadata
    from trace_web.lite import services

    home = Path(tempfile.mkdtemp(prefix="trace-bench-"))
    server = services.ensure_postgres(home, allow_loopback_probe=True)
    services.ensure_databases(server, [name])
    url = services.database_url(server, name)
    os.environ["TRACE_DATA_DB_URL"] = url
    migrate_data_db(url)
    engine = create_data_engine(url)
    truncate(engine)
    del sa, metadata
    return engine


def truncate(engine) -> None:
    import sqlalchemy as sa

    from trace_chain.hot_schema import metadata

    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables)))


def web3_baseline_write(w3, engine, chain_id: int, start: int, end: int) -> int:
    """The plain loop a user would write: web3 get_block + a receipt per transaction, then
    INSERT the same rows (executemany) in one transaction per block. Returns rows written."""
    import sqlalchemy as sa

    from trace_chain.hot_schema import hot_blocks, hot_logs, hot_transactions

    rows = 0
    for number in range(start, end):
        block = w3.eth.get_block(number, full_transactions=True)
        txs, logs = [], []
        for tx in block["transactions"]:
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            txs.append(
                {
                    "chain_id": chain_id,
                    "block_number": number,
                    "transaction_index": tx["transactionIndex"],
                    "transaction_hash": "0x" + tx["hash"].hex().removeprefix("0x"),
                    "block_hash": "0x" + block["hash"].hex().removeprefix("0x"),
                    "from_address": tx["from"].lower(),
                    "to_address": tx["to"].lower() if tx.get("to") else None,
                    "value": tx["value"],
                    "gas_limit": tx["gas"],
                    "gas_price": tx.get("gasPrice"),
                    "input": "0x" + bytes(tx["input"]).hex(),
                    "nonce": tx["nonce"],
                    "success": receipt["status"] == 1,
                    "gas_used": receipt["gasUsed"],
                }
            )
            for entry in receipt["logs"]:
                topics = ["0x" + t.hex().removeprefix("0x") for t in entry["topics"]] + [None] * 4
                logs.append(
                    {
                        "chain_id": chain_id,
                        "block_number": number,
                        "log_index": entry["logIndex"],
                        "transaction_index": entry["transactionIndex"],
                        "transaction_hash": "0x"
                        + entry["transactionHash"].hex().removeprefix("0x"),
                        "block_hash": "0x" + entry["blockHash"].hex().removeprefix("0x"),
                        "address": entry["address"].lower(),
                        "topic0": topics[0],
                        "topic1": topics[1],
                        "topic2": topics[2],
                        "topic3": topics[3],
                        "data": "0x" + bytes(entry["data"]).hex(),
                    }
                )
        with engine.begin() as conn:
            conn.execute(
                hot_blocks.insert(),
                {
                    "chain_id": chain_id,
                    "block_number": number,
                    "block_hash": "0x" + block["hash"].hex().removeprefix("0x"),
                    "parent_hash": "0x" + block["parentHash"].hex().removeprefix("0x"),
                    "timestamp": block["timestamp"],
                    "miner": block["miner"].lower(),
                    "gas_used": block["gasUsed"],
                    "base_fee_per_gas": block.get("baseFeePerGas"),
                    "size": block.get("size"),
                },
            )
            if txs:
                conn.execute(hot_transactions.insert(), txs)
            if logs:
                conn.execute(hot_logs.insert(), logs)
        rows += 1 + len(txs) + len(logs)
    del sa
    return rows


def require_baseline(module: str) -> None:
    """Stop with the install command when a baseline's library is missing."""
    if importlib.util.find_spec(module) is None:
        sys.exit(f"{module} is not installed; run: pip install -r requirements/bench.txt")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
