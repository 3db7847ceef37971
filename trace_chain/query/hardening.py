"""The sandbox: a DuckDB connection set up by trusted code, then locked before user SQL runs.

One function, one fixed order (`open_sandbox`): extensions loaded by path from their PyPI
packages, S3 credentials, the hot Postgres attached read-only, the views created, limits set,
file access narrowed to the committed files, external access off, auto-install/auto-load off,
configuration locked, and the lock checked. Also the time limit (a timer calling
`interrupt()`) and DuckDB's exceptions turned into the query errors, redacted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.metadata
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trace_chain.query import spares
from trace_chain.query.errors import QueryFailed, QueryTimedOut, SandboxSetupFailed

if TYPE_CHECKING:
    import duckdb

DUCKDB_VERSION = "1.5.5"  # the only version whose extension packages are on PyPI
_EXTENSION_PACKAGES = {
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
    # Not loaded into query sandboxes: Iceberg readers only (trace_chain/iceberg.py).
    "avro": "duckdb_extension_avro",
    "iceberg": "duckdb_extension_iceberg",
}
_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")  # trusted configuration is checked too
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\Z", re.IGNORECASE)
_REMOTE = ("s3://", "s3a://", "s3n://", "http://", "https://")


@dataclass(frozen=True)
class PostgresSource:
    """The hot tables' database, attached READ_ONLY as `alias`.

    `dsn` is a libpq connection string without a password (a trust or peer role on loopback,
    or a password file): a password in it would be readable by anything that can see the
    attached database's path. The role should read only what the caller may read."""

    dsn: str
    alias: str = "hot"


@dataclass(frozen=True)
class S3Access:
    """Credentials for reading committed cold files on S3 (or an S3-compatible endpoint)."""

    key_id: str
    secret: str
    region: str = "us-east-1"
    endpoint: str | None = None  # host:port, for moto or MinIO
    url_style: str = "vhost"  # "path" for moto / MinIO
    use_ssl: bool = True
    session_token: str | None = None


@dataclass(frozen=True)
class SandboxLimits:
    memory_limit: str = "1GB"
    threads: int = 2
    max_temp_directory_size: str = "2GB"


@dataclass
class Sandbox:
    """A hardened connection and what it exposes. User SQL runs on `connection` only after
    `gate(sql, relations=sandbox.relations)`, inside `with sandbox.guard(seconds):`."""

    connection: duckdb.DuckDBPyConnection
    relations: frozenset[str]
    redactions: tuple[str, ...]  # strings no error shown to a user may contain

    @contextlib.contextmanager
    def guard(self, seconds: float) -> Iterator[None]:
        """The time limit and the error mapping around running (and fetching) one query."""
        with engine_errors(secrets=self.redactions), time_limit(self.connection, seconds):
            yield

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def extension_path(name: str) -> Path:
    """The `.duckdb_extension` file inside its PyPI package, for this DuckDB version."""
    package = _EXTENSION_PACKAGES.get(name)
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise SandboxSetupFailed(f"DuckDB extension {name} is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{DUCKDB_VERSION}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise SandboxSetupFailed(f"DuckDB extension {name} has no build for {DUCKDB_VERSION}")
    return path


# Extension files whose sha256 matched their wheel's RECORD in this process, by path, with
# the (size, mtime_ns, inode) they had: a file that changes in any of these is hashed again.
_VERIFIED: dict[str, tuple[int, int, int]] = {}
_VERIFIED_LOCK = threading.Lock()


def verified_extension_path(name: str) -> Path:
    """`extension_path(name)`, after checking the file's sha256 against the one its wheel
    recorded at install (`*.dist-info/RECORD`), once per process and again whenever the file
    changes. This check stands in for DuckDB's own signature check, which re-reads and
    verifies the whole file on every `LOAD` (0.5-1.7 s for the Postgres scanner). Fails closed:
    no RECORD entry, no sha256 in it, a different size or digest is `SandboxSetupFailed`."""
    path = extension_path(name)
    key = str(path)
    before = _identity(path)
    with _VERIFIED_LOCK:
        if _VERIFIED.get(key) == before:
            return path
        expected_digest, expected_size = _recorded_hash(_EXTENSION_PACKAGES[name], path)
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").digest()
        actual = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if _identity(path) != before:
            raise SandboxSetupFailed(f"DuckDB extension {name} changed while it was verified")
        if before[0] != expected_size or not hmac.compare_digest(actual, expected_digest):
            raise SandboxSetupFailed(f"DuckDB extension {name} does not match its package")
        _VERIFIED[key] = before
    return path


def _identity(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _recorded_hash(package: str, path: Path) -> tuple[str, int]:
    """The urlsafe-base64 sha256 (no padding) and size RECORD holds for `path`."""
    try:
        files = importlib.metadata.distribution(package).files
    except importlib.metadata.PackageNotFoundError:
        files = None
    resolved = path.resolve()
    for entry in files or ():
        if Path(entry.locate()).resolve() != resolved:
            continue
        if entry.hash is None or entry.hash.mode != "sha256" or not entry.hash.value:
            break
        if entry.size is None:
            break
        return entry.hash.value, int(entry.size)
    raise SandboxSetupFailed(f"package {package} records no sha256 and size for {path.name}")


ViewBuilder = Callable[["duckdb.DuckDBPyConnection"], tuple[Mapping[str, str], Sequence[str]]]


def open_sandbox(
    *,
    views: Mapping[str, str] | ViewBuilder,
    allowed_files: Sequence[str] = (),
    temp_directory: str | Path,
    limits: SandboxLimits | None = None,
    postgres: PostgresSource | None = None,
    s3: S3Access | None = None,
) -> Sandbox:
    """A locked in-memory DuckDB exposing exactly `views` (relation name -> view body, SQL
    written by trusted code, e.g. `SELECT ... FROM read_parquet([...])` or over the attached
    Postgres), able to read only `allowed_files` (local absolute paths or s3:// / https://
    URLs) and to spill only into `temp_directory` (one per query; created if missing).

    `views` may also be a builder: called with the connection once Postgres is attached and a
    transaction is open (so every scan of the attached database, the builder's and the user
    query's, reads one snapshot), it returns the views and the files they may read.

    Raises `SandboxSetupFailed` (a platform fault) if any step fails; the connection is never
    returned half-hardened."""
    import duckdb

    if duckdb.__version__ != DUCKDB_VERSION:
        raise SandboxSetupFailed(f"DuckDB {DUCKDB_VERSION} is required, not {duckdb.__version__}")
    limits = limits or SandboxLimits()
    _check_inputs(views if not callable(views) else {}, allowed_files, limits, postgres)
    temp = Path(temp_directory)
    temp.mkdir(parents=True, exist_ok=True)
    remote = bool(s3) or any(path.startswith(_REMOTE) for path in allowed_files)
    # Only what this sandbox needs: an extension not loaded has no functions to abuse.
    wanted = {"postgres_scanner": postgres is not None, "httpfs": remote or s3 is not None}
    # Verified here against the wheel's RECORD, so DuckDB's per-LOAD signature check is not
    # needed: unsigned loading is allowed only in a database that loads such files, and only
    # until external access goes off (after that no LOAD of any file is possible).
    paths = [verified_extension_path(name) for name, needed in wanted.items() if needed]

    # A primed spare (trace_chain/query/spares.py) when one is ready: the same new database
    # with the same steps done, up to the attach. Not with S3: its secret is per query.
    key = (tuple(str(p) for p in paths), postgres) if s3 is None else None

    def primed() -> duckdb.DuckDBPyConnection:
        return _primed(paths, postgres, redactions=[str(temp), *allowed_files])

    spare = spares.POOL.take(key) if key is not None else None
    if key is not None:
        spares.POOL.refill(key, primed)
    return _harden(
        spare if spare is not None else primed(),
        views=views,
        allowed_files=allowed_files,
        temp=temp,
        limits=limits,
        paths=paths,
        postgres=postgres,
        s3=s3,
    )


_CONNECT_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,  # no Python variables as tables
}


def _primed(
    paths: Sequence[Path], postgres: PostgresSource | None, *, redactions: Sequence[str]
) -> duckdb.DuckDBPyConnection:
    """A new in-memory database with `paths` loaded and `postgres` attached read-only, its
    catalog read once (the first read through the scanner loads it). Nothing else: no views,
    no secret, no transaction. Raises `SandboxSetupFailed`, redacted."""
    import duckdb

    # Unsigned (pre-verified) loading only in a database that loads such files, and only
    # until external access goes off: after that no LOAD of any file is possible.
    config = {**_CONNECT_CONFIG, "allow_unsigned_extensions": bool(paths)}
    conn = duckdb.connect(":memory:", config=config)
    try:
        for path in paths:
            conn.execute(f"LOAD {_literal(str(path))}")
        if postgres:
            conn.execute(
                f"ATTACH {_literal(postgres.dsn)} AS {_ident(postgres.alias)} "
                "(TYPE postgres, READ_ONLY)"
            )
            conn.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ?", [postgres.alias]
            ).fetchall()
    except duckdb.Error as error:
        conn.close()
        secrets = [str(p) for p in paths] + list(redactions)
        if postgres:
            secrets.append(postgres.dsn)
        raise SandboxSetupFailed(
            f"sandbox set-up failed: {redact(str(error), secrets=secrets)}"
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _harden(
    conn: duckdb.DuckDBPyConnection,
    *,
    views: Mapping[str, str] | ViewBuilder,
    allowed_files: Sequence[str],
    temp: Path,
    limits: SandboxLimits,
    paths: Sequence[Path],
    postgres: PostgresSource | None,
    s3: S3Access | None,
) -> Sandbox:
    """The rest of `open_sandbox` on a primed database: closes it on any failure."""
    import duckdb

    secrets = [str(p) for p in paths] + [str(temp)] + list(allowed_files)
    if postgres:
        secrets.append(postgres.dsn)
    if s3:
        secrets += [s3.secret, s3.key_id] + ([s3.session_token] if s3.session_token else [])
    try:
        if s3:
            conn.execute(_s3_secret(s3))
        if callable(views):
            conn.execute("BEGIN")  # one snapshot of the attached database from here on
            views, allowed_files = views(conn)
            _check_inputs(views, allowed_files, limits, postgres)
            secrets += list(allowed_files)
        for name, body in views.items():
            conn.execute(f"CREATE VIEW {_ident(name)} AS {body}")
        # Limits first: temp_directory cannot change once external access is off.
        conn.execute(f"SET memory_limit = {_literal(limits.memory_limit)}")
        conn.execute(f"SET threads = {int(limits.threads)}")
        conn.execute(f"SET temp_directory = {_literal(str(temp))}")
        conn.execute(f"SET max_temp_directory_size = {_literal(limits.max_temp_directory_size)}")
        conn.execute("SET python_enable_replacements = false")
        files = ", ".join(_literal(path) for path in allowed_files)
        conn.execute(f"SET allowed_paths = [{files}]")
        conn.execute("SET enable_external_access = false")
        conn.execute("SET autoinstall_known_extensions = false")
        conn.execute("SET autoload_known_extensions = false")
        conn.execute("SET lock_configuration = true")
        _verify_locked(conn, unsigned=bool(paths))
    except duckdb.Error as error:
        conn.close()
        raise SandboxSetupFailed(
            f"sandbox set-up failed: {redact(str(error), secrets=secrets)}"
        ) from None
    except BaseException:  # a builder's bad views, our own refusal: never left open either
        conn.close()
        raise
    return Sandbox(connection=conn, relations=frozenset(views), redactions=tuple(secrets))


def _verify_locked(conn: duckdb.DuckDBPyConnection, *, unsigned: bool) -> None:
    """Read the settings back and try to undo the lock: fail closed if anything is off.
    `unsigned`: whether the database was opened allowing unsigned (pre-verified) extensions."""
    import duckdb

    expected = {
        "allow_unsigned_extensions": "true" if unsigned else "false",
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allow_community_extensions": "false",
        "python_enable_replacements": "false",
    }
    for name, value in expected.items():
        (actual,) = conn.execute(f"SELECT current_setting('{name}')::VARCHAR").fetchone()
        if str(actual).lower() != value:
            raise SandboxSetupFailed(f"sandbox setting {name} is {actual}, expected {value}")
    # Try to undo it on a second connection to the same database: settings are the
    # database's, and a failed statement would abort the transaction the views were built in.
    probe = conn.cursor()
    try:
        probe.execute("SET enable_external_access = true")
    except duckdb.InvalidInputException:
        return
    finally:
        probe.close()
    raise SandboxSetupFailed("sandbox configuration did not lock")


def _check_inputs(
    views: Mapping[str, str],
    allowed_files: Sequence[str],
    limits: SandboxLimits,
    postgres: PostgresSource | None,
) -> None:
    for name in views:
        if not _NAME.match(name):
            raise ValueError(f"relation names are lowercase identifiers: {name!r}")
    if isinstance(allowed_files, str):
        raise TypeError("allowed_files is a list of paths, not one string")
    for path in allowed_files:
        if not (path.startswith(_REMOTE) or Path(path).is_absolute()):
            raise ValueError(f"allowed files are absolute paths or URLs: {path!r}")
    if not _MEMORY.match(limits.memory_limit) or not _MEMORY.match(limits.max_temp_directory_size):
        raise ValueError("memory limits are sizes such as '512MB' or '2GB'")
    if not 1 <= int(limits.threads) <= 64:
        raise ValueError("threads must be between 1 and 64")
    if postgres:
        if not _NAME.match(postgres.alias):
            raise ValueError(f"the attach alias is a lowercase identifier: {postgres.alias!r}")
        if _has_password(postgres.dsn):
            raise ValueError(
                "the Postgres DSN holds a password: use a password file (PGPASSFILE) or a "
                "trust/peer role, so no query can read it back"
            )


def _has_password(dsn: str) -> bool:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return bool(conninfo_to_dict(dsn).get("password"))
    except Exception as error:  # psycopg raises ProgrammingError on a malformed DSN
        raise ValueError("the Postgres DSN is not a valid libpq connection string") from error


def _s3_secret(s3: S3Access) -> str:
    options = {
        "KEY_ID": s3.key_id,
        "SECRET": s3.secret,
        "REGION": s3.region,
        "URL_STYLE": s3.url_style,
    }
    if s3.endpoint:
        options["ENDPOINT"] = s3.endpoint
    if s3.session_token:
        options["SESSION_TOKEN"] = s3.session_token
    parts = ", ".join(f"{key} {_literal(value)}" for key, value in options.items())
    ssl = "true" if s3.use_ssl else "false"
    return f"CREATE TEMPORARY SECRET trace_s3 (TYPE s3, {parts}, USE_SSL {ssl})"


def _literal(value: str) -> str:
    if "\0" in value:
        raise ValueError("NUL in a sandbox setting")
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'


# The time limit.


@contextlib.contextmanager
def time_limit(conn: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt whatever `conn` runs inside the block once `seconds` have passed; the
    interruption surfaces as `QueryTimedOut`. A timer that fires after the block is over does
    nothing (an idle connection ignores `interrupt()`, and the finished flag stops it first)."""
    import duckdb

    if seconds <= 0:
        raise ValueError("a time limit is positive")
    lock = threading.Lock()
    state = {"finished": False, "fired": False}

    def fire() -> None:
        with lock:
            if state["finished"]:
                return
            state["fired"] = True
            conn.interrupt()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException:
        if state["fired"]:
            raise QueryTimedOut(seconds) from None
        raise
    finally:
        with lock:
            state["finished"] = True
        timer.cancel()


# Engine errors.

# DuckDB's exception classes by name (duckdb's Python module exposes them), to a code and
# whether the query (not the platform) is at fault.
_ERROR_CODES: tuple[tuple[str, str, bool], ...] = (
    ("InterruptException", "interrupted", False),
    ("OutOfMemoryException", "out_of_memory", True),
    ("PermissionException", "not_permitted", True),
    ("ParserException", "syntax", True),
    ("SyntaxException", "syntax", True),
    ("BinderException", "invalid_query", True),
    ("CatalogException", "invalid_query", True),
    ("ConversionException", "invalid_value", True),
    ("OutOfRangeException", "invalid_value", True),
    ("InvalidInputException", "invalid_value", True),
    ("TypeMismatchException", "invalid_value", True),
    ("InvalidTypeException", "invalid_value", True),
    ("NotImplementedException", "not_supported", True),
    ("HTTPException", "storage_error", False),
    ("IOException", "storage_error", False),
    ("FatalException", "engine_internal", False),
    ("InternalException", "engine_internal", False),
)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s\"'/]+(?:/[^\s\"']*)*")
_URL = re.compile(r"\b(?:s3[an]?|https?|gcs|gs|r2|az|abfss|file|postgres(?:ql)?)://[^\s\"']*")
_DSN_PAIRS = re.compile(r"\b(?:host|hostaddr|port|user|dbname|password|passfile|sslkey)=\S+")


_HINTS = ("LINE ", "Did you mean", "Candidate", "Possible solutions", "HINT:", "DETAIL:")


def redact(message: str, *, secrets: Sequence[str] = ()) -> str:
    """An engine message fit to show a user: the message without DuckDB's context and hints
    (they quote catalog names, e.g. other databases' tables), a Postgres error reduced to the
    server's own words (not the remote query), and paths, URLs, connection strings and any
    known secret removed."""
    kept = []
    for line in message.strip().splitlines():
        if not line.strip() or line.lstrip().startswith(_HINTS):
            break
        kept.append(line.strip())
    text = " ".join(kept) or "the engine failed"
    if "ERROR:" in text:
        text = "Postgres " + " ".join(text[text.index("ERROR:") :].split())
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    text = _URL.sub("<url>", text)
    text = _DSN_PAIRS.sub("<connection>", text)
    text = _ABSOLUTE_PATH.sub("<path>", text)
    return text


@contextlib.contextmanager
def engine_errors(*, secrets: Sequence[str] = ()) -> Iterator[None]:
    """Turn any DuckDB exception raised inside the block into one `QueryFailed`, redacted.
    Domain errors (`QueryTimedOut` from `time_limit`) pass through unchanged."""
    import duckdb

    try:
        yield
    except duckdb.Error as error:
        code, user_error = "engine_error", False
        for name, candidate, blame in _ERROR_CODES:
            kind = getattr(duckdb, name, None)
            if kind is not None and isinstance(error, kind):
                code, user_error = candidate, blame
                break
        raise QueryFailed(
            code, redact(str(error), secrets=secrets), user_error=user_error
        ) from None
