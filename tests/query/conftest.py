"""Real parts for the gate and sandbox tests: Parquet, CSV, JSON and text files on disk (the
committed ones and decoys beside and outside them), a real Postgres database with a read-only
role that may read one table (trust login on loopback, no password anywhere), an HTTP server
that counts every request (a URL read is a hit), and hardened sandboxes over all of it.

Every secret the sandbox must keep is a canary string; a test that finds one in a result or an
error has found a leak.
"""

# ruff: noqa: S608 - these tests build SQL from their own fixtures and attacks, on purpose

from __future__ import annotations

import http.server
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trace_chain.db import sqlalchemy_url
from trace_chain.query.hardening import PostgresSource, Sandbox, SandboxLimits, open_sandbox

RELATIONS = frozenset({"blocks", "transactions", "logs"})
COLD_BLOCKS = 100  # blocks 0..99 cold; transactions of blocks 80..99 are hot (Postgres)
HOT_FROM = 80


@dataclass
class World:
    """Everything a hostile query might try to reach, and the strings that prove it did."""

    cold_dir: Path
    allowed_files: list[str]
    views: dict[str, str]
    decoys: dict[str, str]  # name -> path of a file that must never be read
    file_canary: str
    pg_canary: str
    postgres: PostgresSource
    superuser_dsn: str
    reader_role: str
    database: str
    url: str  # the counting HTTP server
    hits: list[str] = field(default_factory=list)
    scratch: Path | None = None

    def markers(self, temp_directory: Path) -> dict[str, str]:
        """What no `blocked` query may show: data outside the views, and the sandbox's own
        settings (storage paths, the temp directory, the connection string, the role)."""
        found = {
            "file canary": self.file_canary,
            "postgres canary": self.pg_canary,
            "/etc/passwd": "root:x:0:0",
            "temp directory": str(temp_directory),
            "cold directory": str(self.cold_dir),
            "database name": self.database,
            "reader role": self.reader_role,
        }
        found.update({f"decoy {name}": path for name, path in self.decoys.items()})
        return found


def _write_cold(cold: Path, outside: Path, file_canary: str) -> tuple[list[str], dict]:
    import duckdb

    con = duckdb.connect()
    blocks = cold / "blocks" / "chain1__blocks__00000000_to_00000099.parquet"
    transactions = cold / "transactions" / "chain1__transactions__00000000_to_00000079.parquet"
    logs = cold / "logs" / "chain1__logs__00000000_to_00000099.parquet"
    for path in (blocks, transactions, logs):
        path.parent.mkdir(parents=True)
    con.execute(
        f"""COPY (
            SELECT 1::BIGINT AS chain_id, i::BIGINT AS block_number,
                   '0x' || lpad(to_hex(1000 + i), 64, '0') AS block_hash,
                   '0x' || lpad(to_hex(999 + i), 64, '0') AS parent_hash,
                   (1700000000 + 12 * i)::BIGINT AS timestamp,
                   '0x' || lpad(to_hex(i % 3), 40, '0') AS miner,
                   (21000 * (i % 5))::BIGINT AS gas_used, 30000000::BIGINT AS gas_limit,
                   (7 + i % 4)::HUGEINT AS base_fee_per_gas, (i % 5)::INTEGER AS transaction_count
            FROM range({COLD_BLOCKS}) t(i)
        ) TO '{blocks}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (
            SELECT 1::BIGINT AS chain_id, (i // 2)::BIGINT AS block_number,
                   (i % 2)::INTEGER AS transaction_index,
                   '0x' || lpad(to_hex(50000 + i), 64, '0') AS transaction_hash,
                   '0x' || lpad(to_hex(i % 7), 40, '0') AS from_address,
                   CASE WHEN i % 9 = 0 THEN NULL ELSE '0x' || lpad(to_hex(i % 4), 40, '0') END
                       AS to_address,
                   (i * 1000000000000)::HUGEINT AS value, (21000 + i)::BIGINT AS gas_used,
                   (i % 2)::INTEGER AS status
            FROM range({HOT_FROM * 2}) t(i)
        ) TO '{transactions}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (
            SELECT 1::BIGINT AS chain_id, (i // 3)::BIGINT AS block_number,
                   (i % 3)::INTEGER AS log_index,
                   '0x' || lpad(to_hex(50000 + i // 3), 64, '0') AS transaction_hash,
                   '0x' || lpad(to_hex(i % 2), 40, '0') AS address,
                   '0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef' AS topic0,
                   '0x' || lpad(to_hex(i), 64, '0') AS data
            FROM range({COLD_BLOCKS * 3}) t(i)
        ) TO '{logs}' (FORMAT parquet)"""
    )
    # Decoys: beside the committed files (same directory) and outside them.
    decoys = {
        "parquet": str(outside / "decoy.parquet"),
        "beside": str(blocks.parent / "chain1__blocks__00000100_to_00000199.parquet"),
        "csv": str(outside / "decoy.csv"),
        "json": str(outside / "decoy.json"),
        "text": str(outside / "decoy.txt"),
        "database": str(outside / "decoy.duckdb"),
        "dir": str(outside),
    }
    for name in ("parquet", "beside"):
        con.execute(
            f"COPY (SELECT '{file_canary}' AS secret, 1 AS block_number) "
            f"TO '{decoys[name]}' (FORMAT parquet)"
        )
    Path(decoys["csv"]).write_text(f"secret,block_number\n{file_canary},1\n")
    Path(decoys["json"]).write_text(f'{{"secret": "{file_canary}"}}\n')
    Path(decoys["text"]).write_text(f"{file_canary}\n")
    decoy_db = duckdb.connect(decoys["database"])
    decoy_db.execute(f"CREATE TABLE secret AS SELECT '{file_canary}' AS secret")
    decoy_db.close()
    con.close()
    return [str(blocks), str(transactions), str(logs)], decoys


def _libpq(url: str, *, user: str, dbname: str) -> str:
    parsed = sqlalchemy_url(url)
    host = parsed.host or parsed.query.get("host") or "127.0.0.1"
    port = parsed.port or 5432
    return f"host={host} port={port} user={user} dbname={dbname}"


@pytest.fixture(scope="session")
def hot_postgres() -> Iterator[dict[str, str]]:
    """A database of its own with `hot_transactions` (readable by the reader role) and
    `gate_secret` (not readable by it), and a LOGIN role without a password that may read
    only the first. Dropped at the end."""
    import psycopg

    admin_url = os.environ["TRACE_DATA_DB_URL"]
    parsed = sqlalchemy_url(admin_url)
    superuser = parsed.username or "postgres"
    token = uuid.uuid4().hex[:10]
    database, role = f"trace_gate_{token}", f"trace_gate_reader_{token}"
    canary = f"CANARY-PG-{uuid.uuid4().hex}"
    admin_dsn = _libpq(admin_url, user=superuser, dbname=parsed.database or "postgres")
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        with psycopg.connect(_libpq(admin_url, user=superuser, dbname=database)) as db:
            db.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            db.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
            db.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            db.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
            db.execute(
                """CREATE TABLE hot_transactions (
                    chain_id BIGINT NOT NULL, block_number BIGINT NOT NULL,
                    transaction_index INTEGER NOT NULL, transaction_hash TEXT NOT NULL,
                    from_address TEXT NOT NULL, to_address TEXT, value NUMERIC(78, 0) NOT NULL,
                    gas_used BIGINT, status INTEGER)"""
            )
            db.execute(
                f"""INSERT INTO hot_transactions
                SELECT 1, i / 2, i % 2, '0x' || lpad(to_hex(50000 + i), 64, '0'),
                       '0x' || lpad(to_hex(i % 7), 40, '0'),
                       CASE WHEN i % 9 = 0 THEN NULL ELSE '0x' || lpad(to_hex(i % 4), 40, '0') END,
                       i::NUMERIC * 1000000000000, 21000 + i, i % 2
                FROM generate_series({HOT_FROM * 2}, {COLD_BLOCKS * 2 - 1}) AS i"""
            )
            db.execute("CREATE TABLE gate_secret (secret TEXT)")
            db.execute("INSERT INTO gate_secret VALUES (%s)", (canary,))
            db.execute(f'GRANT SELECT ON hot_transactions TO "{role}"')
        yield {
            "dsn": _libpq(admin_url, user=role, dbname=database),
            "superuser_dsn": _libpq(admin_url, user=superuser, dbname=database),
            "role": role,
            "database": database,
            "canary": canary,
        }
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def _answer(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        body = self.server.canary.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def world(tmp_path_factory, hot_postgres) -> Iterator[World]:
    root = tmp_path_factory.mktemp("gate-world")
    cold, outside = root / "cold", root / "outside"
    outside.mkdir()
    file_canary = f"CANARY-FILE-{uuid.uuid4().hex}"
    allowed, decoys = _write_cold(cold, outside, file_canary)
    blocks, transactions, logs = allowed
    # Trusted view bodies, as the engine writes them (paths are the fixture's own).
    views = {
        "blocks": f"SELECT * FROM read_parquet(['{blocks}'])",
        "transactions": (
            f"SELECT * FROM read_parquet(['{transactions}']) WHERE block_number < {HOT_FROM} "
            "UNION ALL SELECT chain_id, block_number, transaction_index, transaction_hash, "
            "from_address, to_address, value::HUGEINT AS value, gas_used, status "
            f"FROM hot.public.hot_transactions WHERE block_number >= {HOT_FROM}"
        ),
        "logs": f"SELECT * FROM read_parquet(['{logs}'])",
    }
    hits: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.canary = f"{file_canary}\n"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield World(
            cold_dir=cold,
            allowed_files=allowed,
            views=views,
            decoys=decoys,
            file_canary=file_canary,
            pg_canary=hot_postgres["canary"],
            postgres=PostgresSource(dsn=hot_postgres["dsn"]),
            superuser_dsn=hot_postgres["superuser_dsn"],
            reader_role=hot_postgres["role"],
            database=hot_postgres["database"],
            url=f"http://127.0.0.1:{server.server_address[1]}",
            hits=hits,
            scratch=root / "scratch",
        )
    finally:
        server.shutdown()
        server.server_close()


def make_sandbox(world: World, temp_directory: Path, **overrides) -> Sandbox:
    """A sandbox as the engine builds one: the views come from a builder that reads the
    attached Postgres inside the sandbox's transaction (the compaction line, in the engine),
    unless a test passes `views` (and `allowed_files`) itself."""

    def build(conn) -> tuple[dict[str, str], list[str]]:
        (hot_rows,) = conn.execute("SELECT count(*) FROM hot.public.hot_transactions").fetchone()
        assert hot_rows == (COLD_BLOCKS - HOT_FROM) * 2
        return world.views, world.allowed_files

    options = {
        "views": build,
        "temp_directory": temp_directory,
        "limits": SandboxLimits(memory_limit="256MB", threads=1),
        "postgres": world.postgres,
    }
    options.update(overrides)
    return open_sandbox(**options)


@pytest.fixture
def sandbox(world, tmp_path) -> Iterator[Sandbox]:
    """A sandbox with its views given up front (no transaction held open), so one test can run
    several statements on it, failing ones included. In the builder form a failed statement
    aborts the sandbox's transaction: there a sandbox serves exactly one query."""
    with make_sandbox(
        world,
        tmp_path / "query-temp-canary",
        views=world.views,
        allowed_files=world.allowed_files,
    ) as box:
        yield box
