"""The data DB: a SQLAlchemy engine from TRACE_DATA_DB_URL and its Alembic migrations.

Django never touches this database; it is read here from the environment, not Django settings,
so operators and `trace data-migrate` work without configuring Django.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy import URL, Connection, Engine, create_engine

DEFAULT_DATA_DB_URL = "postgres://postgres@127.0.0.1:5432/trace_data"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "pgsql"}


def data_db_url() -> str:
    return os.environ.get("TRACE_DATA_DB_URL") or DEFAULT_DATA_DB_URL


def sqlalchemy_url(url: str) -> URL:
    """`postgres://user:pw@host:port/db?opts` as a psycopg 3 SQLAlchemy URL.

    Parsed by hand because SQLAlchemy neither maps `postgres://` to a driver nor unquotes a
    percent-encoded unix-socket host (`%2Fpath%2Fto%2Fsockdir`); that host becomes `?host=`.
    """
    parts = urlsplit(url)
    if parts.scheme not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a Postgres URL: {parts.scheme}://...")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    if hostport.startswith("["):  # IPv6 literal
        host, _, rest = hostport[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    host = unquote(host)
    query = dict(parse_qsl(parts.query))
    if host.startswith("/"):
        query["host"] = host
        host = ""
    return URL.create(
        "postgresql+psycopg",
        username=unquote(username) or None,
        password=unquote(password) or None,
        host=host or None,
        port=int(port) if port else None,
        database=unquote(parts.path.lstrip("/")) or None,
        query=query,
    )


def create_data_engine(url: str | None = None, **kwargs) -> Engine:
    """A new engine; pre-ping so a pooled connection broken by a Postgres restart is replaced."""
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(sqlalchemy_url(url or data_db_url()), **kwargs)


@cache
def data_engine() -> Engine:
    """The process-wide engine: one pool per process, never an engine per batch."""
    return create_data_engine()


def alembic_config(url: str | None = None):
    """Alembic configured in code: no alembic.ini to keep in sync with the environment."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["data_db_url"] = url or data_db_url()
    return config


def migrate_data_db(url: str | None = None, revision: str = "head") -> None:
    """Upgrade the data DB to `revision` (idempotent: an up-to-date DB is left as is)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


# The role the query engine attaches the data DB as: it may read the hot chain tables and the
# compacted segments' records and nothing else, so SQL that reaches the attachment (it cannot,
# past the gate) still could not read or change anything more. It logs in without a password
# (trust or peer on the data DB's host, or a libpq password file): no secret ever sits in a DSN
# DuckDB could reveal.
QUERY_ROLE = "trace_query"
QUERY_TABLES = ("hot_blocks", "hot_transactions", "hot_logs", "hot_traces", "cold_segments")


def query_reader_dsn(url: str | None = None) -> str:
    """The libpq DSN of the data DB for QUERY_ROLE: TRACE_QUERY_DB_URL if set, else the data
    DB's host, port and database with that role and no password."""
    override = os.environ.get("TRACE_QUERY_DB_URL")
    parts = sqlalchemy_url(override or url or data_db_url())
    fields = {
        "host": parts.host or parts.query.get("host"),
        "port": parts.port,
        "dbname": parts.database,
        "user": parts.username if override else QUERY_ROLE,
    }
    return " ".join(f"{k}={v}" for k, v in fields.items() if v)


def advisory_lock_key(name: str) -> int:
    """The bigint key of the advisory lock `name` (e.g. `trace.compaction:31337`)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def session_advisory_lock(
    engine: Engine, *, key: int, wait: Callable[[], None]
) -> Iterator[Connection]:
    """Hold a Postgres session advisory lock for the duration of the block, on a connection of
    its own (yielded, idle between statements): it dies with its session, so a killed worker
    frees it at once. `wait()` runs between tries while another session holds it."""
    conn = engine.connect()
    try:
        while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar():
            conn.rollback()  # do not sit in a transaction while waiting
            wait()
        conn.commit()
        try:
            yield conn
        finally:
            # The pool would keep the session (and its lock) alive: unlock explicitly, and if
            # that fails, discard the connection so Postgres ends the session.
            try:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                conn.commit()
            except Exception:
                conn.invalidate()
    finally:
        conn.close()
