"""Primed spare databases (trace_chain/query/spares.py): a sandbox opened from a spare is the
same locked sandbox over a new snapshot, a table made after a spare read the catalog is
found, stale spares and a forked child's inherited ones are never used, and
`TRACE_QUERY_SPARE_SECONDS=0` turns them off."""

# ruff: noqa: S608 - the SQL is the tests' own

from __future__ import annotations

import os

import psycopg
import pytest

from tests.query.conftest import HOT_FROM, make_sandbox
from trace_chain.query import spares
from trace_chain.query.errors import QueryFailed
from trace_chain.query.hardening import verified_extension_path

LATE_ROW = "INSERT INTO hot_transactions VALUES (1, 99, 7, '0xspare', '0x0', NULL, 1, 1, 1)"


@pytest.fixture
def key(world):
    spares.POOL.clear()
    yield ((str(verified_extension_path("postgres_scanner")),), world.postgres)
    spares.POOL.clear()


def hot_count(world, temp, **overrides) -> int:
    with make_sandbox(world, temp, **overrides) as sandbox, sandbox.guard(30):
        sql = f"SELECT count(*) FROM transactions WHERE block_number >= {HOT_FROM}"
        return sandbox.connection.execute(sql).fetchone()[0]


def test_a_spare_is_made_after_a_query_and_the_next_one_takes_it(world, key, tmp_path):
    taken = spares.POOL.taken
    assert hot_count(world, tmp_path / "a") == 40
    assert spares.POOL.wait_ready(key, timeout=30)
    with psycopg.connect(world.superuser_dsn, autocommit=True) as admin:
        admin.execute(LATE_ROW)  # committed after the spare was made
    try:

        def build(conn):  # the builder's snapshot begins after the spare's catalog read
            return world.views, world.allowed_files

        with make_sandbox(world, tmp_path / "b", views=build) as sandbox:
            assert spares.POOL.taken == taken + 1
            with sandbox.guard(30):
                late = sandbox.connection.execute(
                    "SELECT count(*) FROM transactions WHERE transaction_hash = '0xspare'"
                ).fetchone()
                locked = sandbox.connection.execute(
                    "SELECT current_setting('lock_configuration')"
                ).fetchone()
            with pytest.raises(QueryFailed), sandbox.guard(30):
                sandbox.connection.execute("SET enable_external_access = true")
    finally:
        with psycopg.connect(world.superuser_dsn, autocommit=True) as admin:
            admin.execute("DELETE FROM hot_transactions WHERE transaction_hash = '0xspare'")
    assert late == (1,) and locked == (True,)


def test_a_table_made_after_the_spare_read_the_catalog_is_found(world, key, tmp_path):
    """A table created after the spare read the attached catalog (a migration of the data DB
    while the server runs): the scanner looks a name it does not know up again."""
    hot_count(world, tmp_path / "a")
    assert spares.POOL.wait_ready(key, timeout=30)
    with psycopg.connect(world.superuser_dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE hot_late (n int)")
        admin.execute("INSERT INTO hot_late VALUES (7)")
        admin.execute(f'GRANT SELECT ON hot_late TO "{world.reader_role}"')
    seen = []

    def build(conn):
        seen.append(conn.execute("SELECT n FROM hot.public.hot_late").fetchone())
        return world.views, world.allowed_files

    taken = spares.POOL.taken
    try:
        assert hot_count(world, tmp_path / "b", views=build) == 40
    finally:
        with psycopg.connect(world.superuser_dsn, autocommit=True) as admin:
            admin.execute("DROP TABLE hot_late")
    assert spares.POOL.taken == taken + 1  # read through the spare
    assert seen == [(7,)]


def test_a_stale_spare_is_not_used(world, key, tmp_path, monkeypatch):
    hot_count(world, tmp_path / "a")
    assert spares.POOL.wait_ready(key, timeout=30)
    monkeypatch.setenv("TRACE_QUERY_SPARE_SECONDS", "0.000001")
    taken = spares.POOL.taken
    assert hot_count(world, tmp_path / "b") == 40
    assert spares.POOL.taken == taken


def test_spares_can_be_turned_off(world, key, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_QUERY_SPARE_SECONDS", "0")
    hot_count(world, tmp_path / "a")
    assert not spares.POOL.wait_ready(key, timeout=1)
    assert spares.max_age_seconds() == 0


@pytest.mark.parametrize(("raw", "seconds"), [("", 30.0), ("nonsense", 30.0), ("-4", 0.0)])
def test_the_spare_age_setting_is_read_safely(monkeypatch, raw, seconds):
    monkeypatch.setenv("TRACE_QUERY_SPARE_SECONDS", raw)
    assert spares.max_age_seconds() == seconds


def test_a_forked_child_never_takes_its_parents_spare(world, key, tmp_path):
    hot_count(world, tmp_path / "a")
    assert spares.POOL.wait_ready(key, timeout=30)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        os.write(write, b"none" if spares.POOL.take(key) is None else b"took")
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        seen = pipe.read()
    os.waitpid(child, 0)
    assert seen == b"none"
    # The parent's spare is untouched by the child (its Postgres session still answers).
    spare = spares.POOL.take(key)
    assert spare is not None
    assert spare.execute("SELECT count(*) FROM hot.public.hot_transactions").fetchone() == (40,)
    spare.close()
