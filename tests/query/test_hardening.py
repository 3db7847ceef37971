"""The sandbox on its own, no gate: after `open_sandbox` the views still read their files and
the attached Postgres, while other files, COPY ... TO, ATTACH, INSTALL/LOAD, glob and changing
settings fail (TRACE.md section 10, checked again here), plus what it does not stop, pinned so
the docs stay true. Also S3 through httpfs (moto), the time limit and the error mapping."""

# ruff: noqa: S608 - these tests build SQL from their own fixtures and attacks, on purpose

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
from pathlib import Path

import pytest

from tests.query.conftest import HOT_FROM, World, make_sandbox
from trace_chain.query.errors import QueryFailed, QueryTimedOut, SandboxSetupFailed
from trace_chain.query.hardening import (
    PostgresSource,
    S3Access,
    SandboxLimits,
    engine_errors,
    extension_path,
    open_sandbox,
    redact,
    time_limit,
    verified_extension_path,
)


def run(sandbox, sql: str, seconds: float = 30) -> list[tuple]:
    with sandbox.guard(seconds):
        return sandbox.connection.execute(sql).fetchall()


def fails(sandbox, sql: str) -> QueryFailed:
    with pytest.raises(QueryFailed) as caught:
        run(sandbox, sql)
    return caught.value


# What must keep working.


def test_views_read_their_files_and_the_attached_postgres(sandbox):
    assert run(sandbox, "SELECT count(*) FROM blocks") == [(100,)]
    assert run(sandbox, "SELECT count(*) FROM logs") == [(300,)]
    cold, hot = run(
        sandbox,
        f"SELECT count(*) FILTER (WHERE block_number < {HOT_FROM}), "
        f"count(*) FILTER (WHERE block_number >= {HOT_FROM}) FROM transactions",
    )[0]
    assert (cold, hot) == (160, 40)
    # the hot rows really come from Postgres: values only the Postgres table holds
    assert run(sandbox, "SELECT max(value) FROM transactions") == [(199 * 10**12,)]


def test_the_limits_are_set(sandbox, tmp_path):
    settings = dict(
        run(
            sandbox,
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('threads', 'memory_limit', 'temp_directory', 'enable_external_access', "
            "'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions')",
        )
    )
    assert settings == {
        "threads": "1",
        "memory_limit": "244.1 MiB",
        "temp_directory": str(tmp_path / "query-temp-canary"),
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    }


def test_a_sort_larger_than_memory_spills_into_the_temp_directory(world, tmp_path):
    limits = SandboxLimits(memory_limit="64MB", threads=1)
    with make_sandbox(world, tmp_path / "spill", limits=limits) as sandbox:
        rows = run(
            sandbox,
            "SELECT count(*), count(DISTINCT m) FROM (SELECT md5(i::VARCHAR) || repeat('x', 64) "
            "AS m FROM range(2000000) t(i) ORDER BY m)",
            seconds=120,
        )
    assert rows == [(2_000_000, 2_000_000)]


# What must fail.


def test_files_outside_the_committed_set_cannot_be_read(sandbox, world):
    for sql in (
        f"SELECT * FROM read_parquet('{world.decoys['parquet']}')",
        f"SELECT * FROM read_parquet('{world.decoys['beside']}')",
        f"SELECT * FROM read_csv('{world.decoys['csv']}')",
        f"SELECT * FROM read_json('{world.decoys['json']}')",
        f"SELECT * FROM read_text('{world.decoys['text']}')",
        f"SELECT * FROM read_blob('{world.decoys['parquet']}')",
        f"SELECT * FROM sniff_csv('{world.decoys['csv']}')",
        f"SELECT * FROM '{world.decoys['parquet']}'",
        "SELECT * FROM read_text('/etc/passwd')",
    ):
        error = fails(sandbox, sql)
        assert error.code == "not_permitted", (sql, error.reason)
        assert world.file_canary not in error.reason


def test_urls_cannot_be_read(sandbox, world):
    world.hits.clear()
    for sql in (
        f"SELECT * FROM read_csv('{world.url}/x.csv')",
        f"SELECT * FROM read_parquet('{world.url}/x.parquet')",
        f"SELECT * FROM read_text('{world.url}/x')",
    ):
        assert fails(sandbox, sql).code == "not_permitted"
    assert world.hits == []


def test_copy_to_and_export_write_nothing(sandbox, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert fails(sandbox, f"COPY blocks TO '{out}/blocks.csv'").code == "not_permitted"
    assert fails(sandbox, f"COPY (SELECT 1) TO '{out}/one.parquet'").code == "not_permitted"
    assert fails(sandbox, f"EXPORT DATABASE '{out}/export'").code == "not_permitted"
    assert list(out.iterdir()) == []


def test_attach_of_files_and_new_postgres_databases_fails(sandbox, world):
    assert fails(sandbox, f"ATTACH '{world.decoys['database']}' AS d").code == "not_permitted"
    error = fails(sandbox, f"ATTACH '{world.superuser_dsn}' AS pg (TYPE postgres)")
    assert error.code == "not_permitted"
    assert world.database not in error.reason  # the DSN is redacted


def test_install_and_load_fail(world, tmp_path):
    with make_sandbox(world, tmp_path / "t", postgres=None, views={}) as sandbox:
        assert fails(sandbox, "INSTALL httpfs").code == "not_permitted"
        path = extension_path("postgres_scanner")  # not loaded by this sandbox
        assert fails(sandbox, f"LOAD '{path}'").code == "not_permitted"
        assert fails(sandbox, "LOAD postgres_scanner").code == "not_permitted"
        assert fails(sandbox, "SELECT * FROM postgres_scan('x', 'y', 'z')").code == "invalid_query"


def test_no_file_loads_once_locked_though_unsigned_extensions_are_allowed(world, tmp_path):
    """The sandbox loads the verified Postgres scanner with unsigned extensions allowed (the
    file was checked against its wheel instead); once external access is off no LOAD of any
    file works, directly on the connection with no gate, even of files in allowed_paths."""
    import duckdb

    copies = tmp_path / "copies"
    copies.mkdir()
    renamed = copies / "evil.duckdb_extension"
    shutil.copyfile(extension_path("postgres_scanner"), renamed)
    httpfs = copies / "httpfs.duckdb_extension"  # not loaded by this sandbox
    shutil.copyfile(extension_path("httpfs"), httpfs)
    arbitrary = copies / "arbitrary.duckdb_extension"
    arbitrary.write_bytes(b"\x7fELF not an extension")
    loadable = [str(renamed), str(httpfs), str(arbitrary)]
    with make_sandbox(
        world,
        tmp_path / "t",
        views=world.views,
        allowed_files=[*world.allowed_files, *loadable],
    ) as sandbox:
        conn = sandbox.connection
        assert conn.execute("SELECT current_setting('allow_unsigned_extensions')").fetchall() == [
            (True,)
        ]
        for path in [*loadable, str(extension_path("httpfs"))]:
            with pytest.raises(duckdb.PermissionException):
                conn.execute(f"LOAD '{path}'")
        with pytest.raises(duckdb.InvalidInputException):
            conn.execute("SET allow_unsigned_extensions = false")
        # httpfs never came in: its functions and settings do not exist
        with pytest.raises(duckdb.CatalogException):
            conn.execute("SELECT current_setting('s3_region')")
        assert run(sandbox, "SELECT count(*) FROM blocks") == [(100,)]


def test_a_sandbox_loading_no_extension_allows_no_unsigned_one(world, tmp_path):
    with make_sandbox(world, tmp_path / "t", postgres=None, views={}) as sandbox:
        assert run(sandbox, "SELECT current_setting('allow_unsigned_extensions')") == [(False,)]


@pytest.fixture
def fake_extension(tmp_path, monkeypatch):
    """A real installed package holding an extension file and its RECORD, on sys.path."""
    from trace_chain.query import hardening

    root = tmp_path / "site"
    package = root / "trace_fake_extension"
    ext = package / "extensions" / f"v{hardening.DUCKDB_VERSION}" / "fake.duckdb_extension"
    ext.parent.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    ext.write_bytes(b"fake extension bytes" * 1000)
    info = root / "trace_fake_extension-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: trace_fake_extension\n")
    relative = ext.relative_to(root).as_posix()

    def record(line: str | None = None) -> None:
        if line is None:
            digest = hashlib.sha256(ext.read_bytes()).digest()
            b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            line = f"{relative},sha256={b64},{ext.stat().st_size}"
        (info / "RECORD").write_text(f"trace_fake_extension/__init__.py,,\n{line}\n")

    record()
    monkeypatch.setitem(hardening._EXTENSION_PACKAGES, "fake", "trace_fake_extension")
    monkeypatch.syspath_prepend(str(root))
    return ext, relative, record


def test_an_extension_is_loaded_only_if_it_matches_its_wheel_record(fake_extension):
    ext, _relative, record = fake_extension
    assert verified_extension_path("fake") == ext
    ext.write_bytes(ext.read_bytes()[:-1] + b"X")  # same size, other bytes: hashed again
    with pytest.raises(SandboxSetupFailed, match="does not match"):
        verified_extension_path("fake")
    record()  # the record now matches the new bytes
    assert verified_extension_path("fake") == ext
    with ext.open("ab") as file:
        file.write(b"more")
    with pytest.raises(SandboxSetupFailed, match="does not match"):
        verified_extension_path("fake")


@pytest.mark.parametrize(
    "line",
    [
        "trace_fake_extension/other.duckdb_extension,sha256=AAAA,3",  # no entry for the file
        "{relative},,",  # no hash
        "{relative},md5=AAAA,20000",  # not sha256
        "{relative},sha256=AAAA,20000",  # wrong digest, right size
    ],
)
def test_a_missing_or_wrong_record_fails_closed(fake_extension, line):
    _ext, relative, record = fake_extension
    record(line.format(relative=relative))
    with pytest.raises(SandboxSetupFailed):
        verified_extension_path("fake")


def test_glob_fails(sandbox, world):
    assert fails(sandbox, f"SELECT * FROM glob('{world.cold_dir}/*/*')").code == "not_permitted"
    assert fails(sandbox, "SELECT * FROM glob('/*')").code == "not_permitted"


@pytest.mark.parametrize(
    "statement",
    [
        "SET enable_external_access = true",
        "SET allowed_paths = ['/']",
        "SET allowed_directories = ['/']",
        "SET lock_configuration = false",
        "SET memory_limit = '100GB'",
        "SET threads = 8",
        "SET temp_directory = '/tmp'",
        "SET autoinstall_known_extensions = true",
        "SET autoload_known_extensions = true",
        "SET python_enable_replacements = true",
        "RESET enable_external_access",
        "RESET lock_configuration",
        "PRAGMA memory_limit = '100GB'",
    ],
)
def test_settings_cannot_change(sandbox, statement):
    error = fails(sandbox, statement)
    assert error.code in {"invalid_value", "not_permitted"}
    assert run(sandbox, "SELECT current_setting('enable_external_access')") == [(False,)]
    assert run(sandbox, "SELECT current_setting('threads')") == [(1,)]


def must_fail(world: World) -> list[tuple[str, str]]:
    decoys = world.decoys
    return [
        (f"SELECT * FROM read_parquet('{decoys['parquet']}')", "not_permitted"),
        (f"SELECT * FROM read_parquet('{decoys['beside']}')", "not_permitted"),
        (f"SELECT * FROM read_text('{decoys['text']}')", "not_permitted"),
        (f"SELECT * FROM read_csv('{world.url}/x.csv')", "not_permitted"),
        (f"SELECT * FROM glob('{world.cold_dir}/*/*')", "not_permitted"),
        (f"COPY blocks TO '{decoys['dir']}/out.csv'", "not_permitted"),
        (f"ATTACH '{decoys['database']}' AS d", "not_permitted"),
        (f"ATTACH '{world.superuser_dsn}' AS pg (TYPE postgres)", "not_permitted"),
        ("INSTALL httpfs", "not_permitted"),
        (f"LOAD '{world.decoys['text']}'", "not_permitted"),
        ("SET enable_external_access = true", "invalid_value"),
        ("SET allowed_paths = ['/']", "invalid_value"),
        ("RESET lock_configuration", "invalid_value"),
        ("SELECT * FROM hot.public.gate_secret", "engine_error"),
    ]


def test_the_builder_form_holds_too_one_statement_per_sandbox(world, tmp_path):
    """The engine's own form: views from a builder, a transaction open under the user query."""
    world.hits.clear()
    for number, (sql, code) in enumerate(must_fail(world)):
        with make_sandbox(world, tmp_path / f"t{number}") as sandbox:
            assert fails(sandbox, sql).code == code, sql
    assert world.hits == []
    assert not Path(world.decoys["dir"], "out.csv").exists()


def test_python_variables_are_not_tables(sandbox):
    import pyarrow as pa

    python_secret = pa.table({"s": ["CANARY-PYTHON"]})  # noqa: F841 - what a scan would find
    assert fails(sandbox, "SELECT * FROM python_secret").code == "invalid_query"


def test_the_attached_postgres_is_read_only_and_limited_to_the_role(sandbox, world):
    error = fails(sandbox, "SELECT * FROM hot.public.gate_secret")
    assert error.reason == "Postgres ERROR: permission denied for table gate_secret"
    error = fails(sandbox, "SELECT * FROM postgres_query('hot', 'SELECT * FROM gate_secret')")
    assert error.reason == "Postgres ERROR: permission denied for table gate_secret"
    error = fails(sandbox, "SELECT * FROM postgres_execute('hot', 'CREATE TABLE pwned (a int)')")
    assert error.reason == (
        "Postgres ERROR: cannot execute CREATE TABLE in a read-only transaction"
    )


# What it does not stop on its own (the gate and the role must): pinned, so the docs stay true.


def test_hardening_alone_does_not_stop_raw_sql_on_the_attached_postgres(sandbox, world):
    assert run(sandbox, "SELECT * FROM postgres_query('hot', 'SELECT current_user')") == [
        (world.reader_role,)
    ]
    assert run(sandbox, "SELECT count(*) FROM hot.public.hot_transactions") == [(40,)]


def test_hardening_alone_does_not_stop_sql_in_strings(sandbox):
    assert run(sandbox, "SELECT * FROM query('SELECT 41 + 1')") == [(42,)]


def test_hardening_alone_does_not_hide_settings_or_the_connection_string(sandbox, world):
    (paths,) = run(sandbox, "SELECT current_setting('allowed_paths')")[0]
    assert any(world.database in path for path in paths)  # DuckDB adds the attached "path"
    assert (world.postgres.dsn,) in run(sandbox, "SELECT path FROM duckdb_databases()")


def test_hardening_alone_does_not_stop_postgres_scan_with_another_dsn(sandbox, world):
    """postgres_scan opens its own connection with any DSN: whatever the Postgres server lets
    that DSN do (here, the trust-authenticated superuser on loopback reads the secret)."""
    rows = run(
        sandbox, f"SELECT * FROM postgres_scan('{world.superuser_dsn}', 'public', 'gate_secret')"
    )
    assert rows == [(world.pg_canary,)]


def test_hardening_alone_does_not_stop_in_memory_state_changes(sandbox):
    """ATTACH ':memory:', CREATE and DETACH work on the connection: a sandbox serves one query
    and is thrown away, so nothing a query changes is seen by the next."""
    run(sandbox, "ATTACH ':memory:' AS scratch")
    run(sandbox, "CREATE MACRO hex(x) AS 'shadowed'")
    assert run(sandbox, "SELECT hex(255)") == [("shadowed",)]
    run(sandbox, "DETACH hot")
    assert fails(sandbox, "SELECT count(*) FROM transactions").code == "invalid_query"


# Set-up: inputs checked, failures are platform errors, redacted, and no half-built sandbox.


def test_a_password_in_the_dsn_is_refused(world, tmp_path):
    for dsn in (
        world.postgres.dsn + " password=hunter2",
        "postgresql://reader:hunter2@127.0.0.1:5432/db",
    ):
        with pytest.raises(ValueError, match="password"):
            make_sandbox(world, tmp_path / "t", postgres=PostgresSource(dsn=dsn))


@pytest.mark.parametrize(
    "overrides",
    [
        {"views": {"Bad Name": "SELECT 1"}},
        {"allowed_files": ["relative/path.parquet"]},
        {"allowed_files": "/one/string.parquet"},
        {"limits": SandboxLimits(memory_limit="lots")},
        {"limits": SandboxLimits(threads=0)},
        {"postgres": PostgresSource(dsn="host=127.0.0.1", alias="hot; DROP")},
    ],
)
def test_bad_configuration_is_refused_before_anything_opens(world, tmp_path, overrides):
    with pytest.raises((ValueError, TypeError)):
        make_sandbox(world, tmp_path / "t", **overrides)


def test_a_failing_step_is_a_redacted_setup_failure(world, tmp_path):
    missing = tmp_path / "never-committed" / "file.parquet"
    with pytest.raises(SandboxSetupFailed) as failed:
        make_sandbox(
            world,
            tmp_path / "t",
            views={"blocks": f"SELECT * FROM read_parquet(['{missing}'])"},
            allowed_files=[str(missing)],
        )
    assert failed.value.code == "sandbox_setup_failed"
    assert str(missing) not in failed.value.reason and "never-committed" not in failed.value.reason

    unreachable = PostgresSource(dsn="host=127.0.0.1 port=1 user=nobody dbname=nothing_here")
    with pytest.raises(SandboxSetupFailed) as failed:
        make_sandbox(world, tmp_path / "t2", postgres=unreachable)
    assert "nothing_here" not in failed.value.reason and "nobody" not in failed.value.reason


# A view builder: called inside the sandbox's transaction, so its reads of the attached Postgres
# and the user query's are one snapshot; the sandbox still locks afterwards.


def test_the_builder_and_the_user_query_read_one_postgres_snapshot(world, tmp_path):
    import psycopg

    seen = {}

    def build(conn):
        (seen["builder"],) = conn.execute(
            "SELECT count(*) FROM hot.public.hot_transactions"
        ).fetchone()
        with psycopg.connect(world.superuser_dsn, autocommit=True) as admin:
            admin.execute(
                "INSERT INTO hot_transactions VALUES (1, 99, 7, '0xlate', '0x0', NULL, 1, 1, 1)"
            )
        return world.views, world.allowed_files

    def plain(conn):
        return world.views, world.allowed_files

    try:
        with make_sandbox(world, tmp_path / "t1", views=build) as sandbox:
            in_snapshot = run(
                sandbox, f"SELECT count(*) FROM transactions WHERE block_number >= {HOT_FROM}"
            )
            locked = run(sandbox, "SELECT current_setting('lock_configuration')")
            assert fails(sandbox, "SET threads = 8").code == "invalid_value"
        with make_sandbox(world, tmp_path / "t2", views=plain) as sandbox:
            after = run(
                sandbox, f"SELECT count(*) FROM transactions WHERE block_number >= {HOT_FROM}"
            )
    finally:
        with psycopg.connect(world.superuser_dsn, autocommit=True) as admin:
            admin.execute("DELETE FROM hot_transactions WHERE transaction_hash = '0xlate'")
    assert seen["builder"] == 40
    assert in_snapshot == [(40,)]  # the row committed after the snapshot began is not seen
    assert locked == [(True,)]
    assert after == [(41,)]


def test_a_builder_is_held_to_the_same_input_checks(world, tmp_path):
    with pytest.raises(ValueError):
        make_sandbox(world, tmp_path / "t", views=lambda conn: ({"Bad Name": "SELECT 1"}, []))
    with pytest.raises(ValueError):
        make_sandbox(world, tmp_path / "t", views=lambda conn: ({"b": "SELECT 1"}, ["rel/x"]))


def test_extensions_come_from_their_packages():
    for name in ("postgres_scanner", "httpfs"):
        path = extension_path(name)
        assert path.is_file() and path.name == f"{name}.duckdb_extension"
        assert "v1.5.5" in path.parts
    with pytest.raises(SandboxSetupFailed):
        extension_path("spatial")


# S3 through httpfs (moto's real S3 over HTTP on loopback).


@pytest.fixture
def s3_world(world: World, monkeypatch, tmp_path):
    import boto3

    from tests.chain.test_object_store import moto_s3_server, s3_bucket_create

    with moto_s3_server() as endpoint:
        bucket = s3_bucket_create(endpoint, monkeypatch)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.upload_file(world.allowed_files[0], bucket, "cold/blocks.parquet")
        client.upload_file(world.decoys["parquet"], bucket, "cold/uncommitted.parquet")
        yield {
            "committed": f"s3://{bucket}/cold/blocks.parquet",
            "uncommitted": f"s3://{bucket}/cold/uncommitted.parquet",
            "access": S3Access(
                key_id="testing",
                secret="testing-secret-key",
                endpoint=endpoint.removeprefix("http://"),
                url_style="path",
                use_ssl=False,
            ),
        }


def test_s3_views_read_committed_objects_only(s3_world, world, tmp_path):
    committed = s3_world["committed"]
    with open_sandbox(
        views={"blocks": f"SELECT * FROM read_parquet(['{committed}'])"},
        allowed_files=[committed],
        temp_directory=tmp_path / "t",
        s3=s3_world["access"],
    ) as sandbox:
        assert run(sandbox, "SELECT count(*) FROM blocks") == [(100,)]
        for key in (s3_world["uncommitted"], committed.rsplit("/", 1)[0] + "/*.parquet"):
            error = fails(sandbox, f"SELECT * FROM read_parquet('{key}')")
            assert error.code == "not_permitted"
            assert world.file_canary not in error.reason and "s3://" not in error.reason
        (secrets,) = run(sandbox, "SELECT secret_string FROM duckdb_secrets()")[0]
        assert "testing-secret-key" not in secrets  # DuckDB redacts the secret itself


# The time limit.


def test_the_time_limit_interrupts_and_the_connection_stays_usable(sandbox):
    with pytest.raises(QueryTimedOut) as timed_out:
        run(sandbox, "SELECT count(*) FROM range(1000000000000) a", seconds=0.2)
    assert timed_out.value.code == "timeout" and timed_out.value.seconds == 0.2
    assert run(sandbox, "SELECT count(*) FROM blocks") == [(100,)]


def test_an_interrupt_on_an_idle_connection_does_not_reach_the_next_query(sandbox):
    """What keeps a timer that fires just after its query harmless."""
    sandbox.connection.interrupt()
    assert run(sandbox, "SELECT count(*) FROM blocks") == [(100,)]


def test_an_interrupt_not_from_the_time_limit_is_not_a_timeout(sandbox):
    import threading

    import duckdb

    started = threading.Event()

    def interrupt_once_running():
        started.wait()
        with contextlib.suppress(Exception):
            for _ in range(2000):
                sandbox.connection.interrupt()
                threading.Event().wait(0.005)

    thread = threading.Thread(target=interrupt_once_running)
    thread.start()
    try:
        with pytest.raises(duckdb.InterruptException), time_limit(sandbox.connection, 600):
            started.set()
            sandbox.connection.execute("SELECT count(*) FROM range(1000000000000) a").fetchall()
    finally:
        thread.join()


def test_time_limits_are_positive(sandbox):
    with pytest.raises(ValueError), time_limit(sandbox.connection, 0):
        pass


# Engine errors: one exception, a code, and nothing a user should not see.


@pytest.mark.parametrize(
    ("sql", "code", "user_error"),
    [
        ("SELECT nope FROM blocks", "invalid_query", True),
        ("SELECT * FROM nothing_here", "invalid_query", True),
        ("SELECT 'x'::INTEGER", "invalid_value", True),
        ("SELECT block_number FROM blocks WHERE block_number = 'abc'", "invalid_value", True),
        ("SELEC 1", "syntax", True),
        ("SELECT * FROM read_text('/etc/hostname')", "not_permitted", True),
        ("SELECT * FROM hot.public.gate_secret", "engine_error", False),
    ],
)
def test_engine_errors_map_to_one_exception_with_a_code(sandbox, sql, code, user_error):
    error = fails(sandbox, sql)
    assert (error.code, error.user_error) == (code, user_error)
    assert "\n" not in error.reason and "LINE 1" not in error.reason


def test_out_of_memory_is_a_user_error(world, tmp_path):
    limits = SandboxLimits(memory_limit="32MB", threads=1)
    with make_sandbox(world, tmp_path / "t", limits=limits) as sandbox:
        error = fails(sandbox, "SELECT list(i) FROM range(50000000) t(i)")
    assert (error.code, error.user_error) == ("out_of_memory", True)


def test_errors_carry_no_paths_hints_or_connection_strings(sandbox, world):
    reasons = [
        fails(sandbox, f"SELECT * FROM read_parquet('{world.decoys['parquet']}')").reason,
        fails(sandbox, "SELECT * FROM hot.public.gate_secret").reason,
        fails(sandbox, "SELECT * FROM gate_secre").reason,  # DuckDB would suggest a table
        fails(sandbox, "SELECT block_numbr FROM blocks").reason,
    ]
    markers = list(world.markers(Path("/nonexistent")).values())
    assert markers  # something to look for in each reason
    for reason in reasons:
        for marker in markers:
            assert marker not in reason, reason
        assert "Did you mean" not in reason and "Candidate" not in reason


def test_redact_removes_secrets_paths_urls_and_connection_strings():
    message = (
        'IO Error: Cannot open "/srv/cold/org-7/blocks.parquet" via s3://bucket/key.parquet\n'
        "for host=10.0.0.5 port=5432 user=reader dbname=trace_data (token abc123)\n"
        'LINE 1: SELECT * FROM "x"\nDid you mean "hot.public.secret"?'
    )
    text = redact(message, secrets=["abc123"])
    assert text == (
        'IO Error: Cannot open "<path>" via <url> for <connection> <connection> <connection> '
        "<connection> (token <redacted>)"
    )
    assert redact("Out of Range Error: 1 / 0 is not a number") == (
        "Out of Range Error: 1 / 0 is not a number"
    )
    assert redact("Out of Memory Error: 16 MiB\n\nPossible solutions:\n* SET threads=1") == (
        "Out of Memory Error: 16 MiB"
    )
    assert redact(
        'Failed to execute query "COPY (SELECT secret FROM public.t)\n TO STDOUT": '
        "ERROR:  permission denied for table t\n"
    ) == ("Postgres ERROR: permission denied for table t")


def test_engine_errors_pass_domain_errors_through(sandbox):
    with pytest.raises(QueryTimedOut), engine_errors():
        raise QueryTimedOut(1)
