"""Benchmark: SQL over chain history through Trace (POST /v1/query on a real gunicorn, and the
engine alone: gate + query_execute) against raw DuckDB on the same Parquet files and the same
hot Postgres rows (same DuckDB, threads and memory limit), in the same run; the scan rate; and
one history kept as many small partitions against the same rows in a few large ones.

    python bench/query.py [--rows 1000000] [--blocks 10000] [--hot-blocks 100] [--chunk 50]
                          [--merged-chunk 2500] [--repeats 7] [--profile]

Uses the Postgres/Redis the environment points at, else loopback, else embedded ones; its
databases are TRACE_BENCH_STATE_DB / TRACE_BENCH_DATA_DB (bench/common.py).
"""

# ruff: noqa: S608 - trusted bench code writing its own SQL from ints and its own paths

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import ROOT, data_db, median, platform, stop, wait_until
from query_data import CHAIN_ID, History, cold_write, hot_write, register

QUERIES = {
    "full count": "SELECT count(*) AS n FROM transactions",
    "sum per 1,000-block range": (
        "SELECT block_number // 1000 AS k, count(*) AS txs, sum(value) AS wei, "
        "sum(gas_used) AS gas FROM transactions GROUP BY 1 ORDER BY 1"
    ),
    "selective: one block (row groups pruned)": (
        "SELECT * FROM transactions WHERE block_number = 4242 ORDER BY transaction_index"
    ),
    "group by sender, top 10": (
        "SELECT from_address, count(*) AS txs, sum(value) AS wei FROM transactions "
        "GROUP BY from_address ORDER BY txs DESC, from_address LIMIT 10"
    ),
    "10,000 rows out": (
        "SELECT block_number, transaction_index, transaction_hash, value FROM transactions "
        "WHERE block_number < 100 ORDER BY 1, 2"
    ),
}
SCAN = "SELECT sum(gas_used) AS gas FROM transactions"
LAYOUT_QUERIES = {
    "count + sum(value)": "SELECT count(*) AS n, sum(value) AS wei FROM transactions",
    "selective: one block": QUERIES["selective: one block (row groups pruned)"],
}


# --- the baselines: raw DuckDB --------------------------------------------------------------


def transactions_view(files: list[str], line: int | None) -> str:
    """What a DuckDB user writes by hand for the same rows: the files below the line, the
    hot table from it on (the line known in advance, no lookup); line None: the files only."""
    from trace_chain import chain_schema

    columns = ", ".join(chain_schema.column_names("transactions"))
    listed = ", ".join(f"'{path}'" for path in files)
    cold = f"SELECT {columns} FROM read_parquet([{listed}])"
    if line is None:
        return cold
    return (
        f"{cold} UNION ALL SELECT {columns} FROM pg.public.hot_transactions "
        f"WHERE chain_id = {CHAIN_ID} AND block_number >= {int(line)}"
    )


class RawDuckDB:
    """DuckDB 1.5.5 with the sandbox's threads and memory limit and the same postgres_scanner
    build, attached read-only as the same role (line None: no hot rows, nothing attached)."""

    def __init__(
        self, *, files: list[str], line: int | None, hot_dsn: str, threads: int, memory: str
    ):
        self.files, self.line, self.hot_dsn = files, line, hot_dsn
        self.threads, self.memory = threads, memory
        self.open = self.connect()

    def connect(self):
        import duckdb

        from trace_chain.query.hardening import extension_path

        con = duckdb.connect(":memory:")
        if self.line is not None:
            con.execute(f"LOAD '{extension_path('postgres_scanner')}'")
            con.execute(f"ATTACH '{self.hot_dsn}' AS pg (TYPE postgres, READ_ONLY)")
        con.execute(f"SET threads = {int(self.threads)}")
        con.execute(f"SET memory_limit = '{self.memory}'")
        con.execute(f"CREATE VIEW transactions AS {transactions_view(self.files, self.line)}")
        return con

    def run_open(self, sql: str):
        """The strongest baseline: one connection kept open, set up once."""
        return self.open.execute(sql).to_arrow_table()

    def run_new(self, sql: str):
        """A connection per query (load, attach, view): the floor of any per-query sandbox."""
        con = self.connect()
        try:
            return con.execute(sql).to_arrow_table()
        finally:
            con.close()

    def files_only(self, sql: str):
        return self.open.execute(sql).to_arrow_table()


# --- Trace ------------------------------------------------------------------------------------


class TraceEngine:
    """What the API runs under the HTTP layer: the gate, then query_execute in a fresh
    sandbox with the settings' limits, over a catalog built once."""

    def __init__(self, catalog, scratch: Path):
        from django.conf import settings

        from trace_chain.query.engine import Limits

        self.catalog, self.scratch = catalog, scratch
        self.limits = Limits(
            timeout_seconds=settings.TRACE_USER_QUERY_SECONDS,
            max_rows=settings.TRACE_QUERY_MAX_ROWS,
            memory_limit=settings.TRACE_QUERY_MEMORY_LIMIT,
            threads=settings.TRACE_QUERY_THREADS,
        )

    def run(self, sql: str):
        from trace_chain.chain_schema import DATASETS
        from trace_chain.query.engine import query_execute
        from trace_chain.query.gate import gate

        gated = gate(sql, relations=DATASETS)
        with tempfile.TemporaryDirectory(dir=self.scratch) as temp:
            result = query_execute(
                gated.sql, catalog=self.catalog, limits=self.limits, temp_dir=Path(temp)
            )
        return result.table

    def run_without_spares(self, sql: str):
        """The same with no primed spare database (trace_chain/query/spares.py): each query
        opens its database, loads, attaches and reads the catalog on the spot."""
        from trace_chain.query import spares

        kept, spares.POOL = spares.POOL, spares.SparePool()
        previous = os.environ.get("TRACE_QUERY_SPARE_SECONDS")
        os.environ["TRACE_QUERY_SPARE_SECONDS"] = "0"
        try:
            return self.run(sql)
        finally:
            spares.POOL = kept
            if previous is None:
                del os.environ["TRACE_QUERY_SPARE_SECONDS"]
            else:
                os.environ["TRACE_QUERY_SPARE_SECONDS"] = previous


class TraceHttp:
    """POST /v1/query to a gunicorn serving trace_web.wsgi (as deploy/Procfile runs it)."""

    def __init__(self, home: Path, token: str):
        import requests

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/query"
        self.token = token
        self.session = requests.Session()
        log = (home / "gunicorn.log").open("w")
        argv = [sys.executable, "-m", "gunicorn", "trace_web.wsgi", "--bind",
                f"127.0.0.1:{port}", "--workers", "1", "--timeout", "120"]  # fmt: skip
        env = {**os.environ, "TRACE_USER_API_RATE": "1000000/min"}  # the bench is one user
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log, env=env)

        def answers() -> bool:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {home / 'gunicorn.log'}")
            try:
                self.session.get(f"http://127.0.0.1:{port}/", timeout=30)
                return True
            except requests.RequestException:
                return False

        try:
            wait_until(answers, timeout=120, interval=0.1)
        except BaseException:
            stop([self.process])
            raise

    def run(self, sql: str, org: str):
        response = self.session.post(
            self.url,
            json={"sql": sql},
            headers={"Authorization": f"Token {self.token}", "X-Trace-Org": org},
        )
        if response.status_code != 200:
            raise SystemExit(f"POST /v1/query answered {response.status_code}: {response.text}")
        return response.json()["rows"]


# --- measuring --------------------------------------------------------------------------------


def rows_of(result) -> list:
    """One comparable form of every path's answer: the API's JSON rows."""
    from trace_web.query.results import json_rows

    return result if isinstance(result, list) else json_rows(result)


def timed(paths: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Each path once to warm up (and to check every path gives the same rows), then the
    paths in turn `repeats` times, so load from others falls on all of them alike."""
    answers = {label: rows_of(run()) for label, run in paths.items()}
    first = next(iter(answers.values()))
    for label, rows in answers.items():
        if rows != first:
            raise SystemExit(f"{label} answered differently: {rows[:3]} vs {first[:3]}")
    seconds: dict[str, list[float]] = {label: [] for label in paths}
    for _ in range(repeats):
        for label, run in paths.items():
            began = time.perf_counter()
            run()
            seconds[label].append(time.perf_counter() - began)
    return seconds


def ms(values: list[float]) -> str:
    return f"{median(values) * 1000:8.1f} ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))  # fmt: skip


def latency(raw: RawDuckDB, engine: TraceEngine, http: TraceHttp, org: str, repeats: int,
            title: str):  # fmt: skip
    header = ["query", "raw open ms", "raw new conn ms", "engine, no spare ms", "engine ms",
              "HTTP ms", "engine/raw", "HTTP/raw"]  # fmt: skip
    rows = []
    for label, sql in QUERIES.items():
        s = timed(
            {
                "raw open": lambda sql=sql: raw.run_open(sql),
                "raw new": lambda sql=sql: raw.run_new(sql),
                "engine, no spare": lambda sql=sql: engine.run_without_spares(sql),
                "engine": lambda sql=sql: engine.run(sql),
                "http": lambda sql=sql: http.run(sql, org),
            },
            repeats,
        )
        base = median(s["raw open"])
        rows.append([label, ms(s["raw open"]), ms(s["raw new"]), ms(s["engine, no spare"]),
                     ms(s["engine"]),
                     ms(s["http"]), f"{median(s['engine']) / base:.2f}",
                     f"{median(s['http']) / base:.2f}"])  # fmt: skip
    print_table(title, header, rows)


def scan_rate(raw: RawDuckDB, engine: TraceEngine, http, org: str, history, repeats: int):
    files = ", ".join(f"'{path}'" for path in raw.files)
    cold, total = history.cold_rows, history.cold_rows + history.hot_rows
    paths = {
        "DuckDB count(*) over the files alone": (
            f"SELECT count(*) FROM read_parquet([{files}])", cold, raw.files_only),
        "DuckDB sum(gas_used) over the files alone": (
            f"SELECT sum(gas_used) FROM read_parquet([{files}])", cold, raw.files_only),
        "DuckDB sum(gas_used), files + hot (open conn)": (SCAN, total, raw.run_open),
        "Trace engine sum(gas_used)": (SCAN, total, engine.run),
        "Trace POST /v1/query sum(gas_used)": (SCAN, total, lambda sql: http.run(sql, org)),
    }  # fmt: skip
    rows = []
    for label, (sql, count, run) in paths.items():
        s = timed({label: lambda sql=sql, run=run: run(sql)}, repeats)[label]
        rows.append([label, f"{count:,}", ms(s), f"{count / median(s) / 1e6:.1f}"])
    print_table("Scan rate", ["path", "rows", "ms", "M rows/s"], rows)


def layouts(layout: dict, http, org_by: dict, repeats: int):
    """The same rows as many small partitions and as a few large ones, same queries."""
    from trace_web.orgs.models import Org, Role
    from trace_web.query.selectors import query_catalog

    rows = []
    for label, sql in LAYOUT_QUERIES.items():
        paths = {}
        for name, raw in layout.items():
            paths[f"{name} raw"] = lambda sql=sql, raw=raw: raw.run_open(sql)
            paths[f"{name} http"] = lambda sql=sql, name=name: http.run(sql, org_by[name])
        s = timed(paths, repeats)
        for name in layout:
            raw_s, http_s = s[f"{name} raw"], s[f"{name} http"]
            ratio = f"{median(http_s) / median(raw_s):.2f}"
            rows.append([f"{label}, {name}", ms(raw_s), ms(http_s), ratio])
    header = ["query, layout", "raw open ms", "HTTP ms", "HTTP/raw"]
    print_table("Layout: same history, same query", header, rows)

    def catalog_files(org) -> list:
        return [[len(query_catalog(org=org, role=Role.ADMIN, hot_dsn="").cold)]]

    catalog_rows = []
    for name in layout:
        org = Org.objects.get(slug=org_by[name])
        s = timed({name: lambda org=org: catalog_files(org)}, repeats)
        catalog_rows.append([f"{name} (all datasets)", ms(s[name])])
    print_table("Building the catalog (Django, once per request)", ["layout", "ms"], catalog_rows)


def setup_steps(hot_dsn: str, repeats: int):
    """Where a fresh sandbox's time goes before any user SQL: the steps open_sandbox takes
    that a kept-open connection does not pay per query."""
    import duckdb

    from trace_chain.query.hardening import extension_path

    extension = extension_path("postgres_scanner")
    seconds: dict[str, list[float]] = {}

    def step(label: str, con, sql: str) -> None:
        began = time.perf_counter()
        con.execute(sql).fetchall()
        seconds.setdefault(label, []).append(time.perf_counter() - began)

    load = f"LOAD '{extension}'"
    attach = f"ATTACH '{hot_dsn}' AS pg (TYPE postgres, READ_ONLY)"
    first = "SELECT min(block_number) FROM pg.public.hot_blocks"
    for _ in range(repeats):
        con = duckdb.connect(":memory:", config={"allow_unsigned_extensions": False})
        step("LOAD postgres_scanner (signature checked)", con, load)
        step("ATTACH the data DB read-only", con, attach)
        step("first read of the attached DB (its catalog)", con, first)
        step("a second read", con, first)
        con.close()
        # For reference only: the sandbox never allows unsigned extensions.
        con = duckdb.connect(":memory:", config={"allow_unsigned_extensions": True})
        step("LOAD postgres_scanner, signature not checked", con, load)
        con.close()
    rows = [[label, ms(values)] for label, values in seconds.items()]
    print_table("Per-query set-up steps (raw DuckDB, same machine)", ["step", "ms"], rows)


def profile(engine: TraceEngine, sql: str) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(10):
        engine.run(sql)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="cold transaction rows")
    parser.add_argument("--blocks", type=int, default=10_000, help="cold blocks")
    parser.add_argument("--hot-blocks", type=int, default=100, help="blocks above the line")
    parser.add_argument("--chunk", type=int, default=50, help="blocks per small partition")
    parser.add_argument("--merged-chunk", type=int, default=2500, help="blocks per large one")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="pyinstrument the engine")
    args = parser.parse_args()

    history = History(args.blocks, max(1, args.rows // args.blocks), args.hot_blocks)
    data_db()
    home = platform()
    objects = home / "objects"
    os.environ["TRACE_OBJECT_STORE_URL"] = objects.as_uri()
    os.environ.setdefault("TRACE_RPC_POOL_BENCH", "http://127.0.0.1:9")  # never called
    from rest_framework.authtoken.models import Token

    from trace_chain.db import query_reader_dsn, sqlalchemy_url
    from trace_chain.object_store import LocalObjectStore
    from trace_web.orgs.models import OrgMembership, Role
    from trace_web.orgs.services import org_create
    from trace_web.query.selectors import query_catalog

    began = time.perf_counter()
    store = LocalObjectStore(objects)
    url = sqlalchemy_url(os.environ["TRACE_DATA_DB_URL"])
    superuser = (f"host={url.host or url.query.get('host')} port={url.port or 5432} "
                 f"user={url.username or 'postgres'} dbname={url.database}")  # fmt: skip
    hot_write(history, superuser_dsn=superuser)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="bench")
    token = Token.objects.create(user=user).key
    layout, org_by = {}, {}
    from django.conf import settings

    for name, chunk in (("merged", args.merged_chunk), ("chunked", args.chunk)):
        config = {"chain_id": CHAIN_ID, "rpc_pool": "bench", "chunk_size": chunk}
        committed = cold_write(history, chunk=chunk, store=store, config=config)
        org = org_create(slug=f"bench-{name}")
        OrgMembership.objects.create(org=org, user=user, role=Role.ADMIN)
        register(org=org, dag_name="backfill", config=config, committed=committed)
        files = sorted(c.path for c in committed if c.dataset == "transactions")
        layout[f"{len(files)} files of {chunk} blocks"] = RawDuckDB(
            files=files, line=history.blocks, hot_dsn=query_reader_dsn(),
            threads=settings.TRACE_QUERY_THREADS, memory=settings.TRACE_QUERY_MEMORY_LIMIT,
        )  # fmt: skip
        org_by[list(layout)[-1]] = org.slug
        if name == "merged":  # the same files for an org without hot rows
            cold_org = org_create(slug="bench-cold")
            OrgMembership.objects.create(org=cold_org, user=user, role=Role.ADMIN)
            register(org=cold_org, dag_name="backfill", config=config, committed=committed,
                     follow=False)  # fmt: skip
            cold_raw = RawDuckDB(
                files=files, line=None, hot_dsn="", threads=settings.TRACE_QUERY_THREADS,
                memory=settings.TRACE_QUERY_MEMORY_LIMIT,
            )  # fmt: skip
    built = time.perf_counter() - began
    merged_name = next(iter(layout))
    merged_org = org_by[merged_name]
    from trace_web.orgs.models import Org

    catalog = query_catalog(
        org=Org.objects.get(slug=merged_org), role=Role.ADMIN, hot_dsn=query_reader_dsn()
    )
    scratch = home / "query-scratch"
    scratch.mkdir(exist_ok=True)
    engine = TraceEngine(catalog, scratch)
    cold_engine = TraceEngine(
        query_catalog(org=cold_org, role=Role.ADMIN, hot_dsn=query_reader_dsn()), scratch
    )
    raw = layout[merged_name]
    http = TraceHttp(home, token)
    try:
        load = os.getloadavg()
        print(f"history: {history.blocks:,} cold blocks x {history.per_block} transactions = "
              f"{history.cold_rows:,} cold rows + {history.hot_rows:,} hot rows "
              f"({history.hot_blocks} blocks above the line); built in {built:.0f} s")  # fmt: skip
        print(f"main layout: {merged_name}; DuckDB threads {settings.TRACE_QUERY_THREADS}, "
              f"memory {settings.TRACE_QUERY_MEMORY_LIMIT}; repeats {args.repeats}; "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} "
              "cores")  # fmt: skip
        latency(
            raw,
            engine,
            http,
            merged_org,
            args.repeats,
            "Latency, medians (min-max) in ms; ratios to raw DuckDB, open connection",
        )
        latency(
            cold_raw,
            cold_engine,
            http,
            cold_org.slug,
            args.repeats,
            "Cold only (an org without hot rows): the same files, nothing attached",
        )
        scan_rate(raw, engine, http, merged_org, history, args.repeats)
        layouts(layout, http, org_by, args.repeats)
        setup_steps(query_reader_dsn(), args.repeats)
        if args.profile:
            for sql in (QUERIES["full count"], QUERIES["selective: one block (row groups pruned)"]):
                print(f"\nprofile of the engine, 10 x {sql}")
                profile(engine, sql)
        load = os.getloadavg()
        print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        stop([http.process])
        shutil.rmtree(objects, ignore_errors=True)  # the history; logs stay in the home


if __name__ == "__main__":
    main()
