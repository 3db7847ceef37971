"""cryo_ingest: extract one dataset (blocks, transactions or logs) for one block range with Cryo
into attempt-scoped staging, publish it to the object store under its deterministic,
version-addressed prefix (trace_chain.cold_layout) and report exactly one publication.

Config: `chain_id`, `dataset`, `rpc_pool` (a pool name from the environment) or `rpc_url` (dev
and tests), `max_files` (default 1000), `max_bytes` (default 5 GiB), plus Cryo options. Content
options (columns, compression, chunking, log filters) are part of the config hash; throughput
options (rate limits, concurrency, retries) are not. Scope: the block range `[range_start,
range_end)`. Staging lives under `$TRACE_STAGING_DIR` (default `$TRACE_HOME/staging`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from trace_chain import chain_schema, cold_layout
from trace_chain.chains import chain_settings
from trace_chain.object_store import object_store_from_env, trace_home
from trace_chain.rpc import RpcPool, redact_url, rpc_pool_config_from_env
from trace_operators.context import ConfigError, PermanentError, TaskContext
from trace_operators.validation import (
    BIGINT_MAX,
    INT_MAX,
    ChainId,
    HexStr,
    PoolName,
    StrictModel,
    validate,
)

log = logging.getLogger(__name__)

DATASETS = ("blocks", "transactions", "logs", "traces")
DEFAULT_MAX_FILES = 1000
DEFAULT_MAX_BYTES = 5 * 1024**3
STAGING_DIR_ENV = "TRACE_STAGING_DIR"
STAGING_SUBDIR = "cryo_ingest"
# Another task's staging dir is left alone unless it is older than this: it may belong to a
# task still running in another worker process on this host.
STALE_STAGING_SECONDS = 24 * 3600
_STAGING_NAME = re.compile(r"^task-(\d+)-attempt-(\d+)-")

# Options that change the partition's content (so they are hashed into the prefix). Which
# columns and how they are encoded is not an option: every partition is the one chain schema.
_HEX_LIST_OPTIONS = ("contract", "topic0", "topic1", "topic2", "topic3")  # logs filters
CONTENT_OPTIONS = frozenset((*_HEX_LIST_OPTIONS, "chunk_size", "row_group_size", "exclude_failed"))
# Ours, not Cryo's: the row groups of the canonical files we write.
WRITER_OPTIONS = frozenset({"row_group_size"})
# Cryo options that only change how hard it asks the node: not hashed.
TUNING_OPTIONS = frozenset(
    {
        "requests_per_second",
        "max_concurrent_requests",
        "max_concurrent_chunks",
        "max_retries",
        "initial_backoff",
        "inner_request_size",
    }
)
DEFAULT_ROW_GROUP_ROWS = 100_000
# Cryo's own default (10 retries from 500 ms) can sit on a dead endpoint for minutes; fail over.
DEFAULT_TUNING_OPTIONS: dict[str, Any] = {"max_retries": 3, "initial_backoff": 250}


class CryoFailed(RuntimeError):
    """Cryo could not extract the range from any endpoint (retryable)."""


class RangeNotReady(RuntimeError):
    """No endpoint has the range's last block yet (retryable: the chain will get there)."""


@dataclass
class IngestResult:
    """What `run` did, for logs, tests and benchmarks (the worker ignores it)."""

    status: str  # "uploaded" | "identical" | "equivalent"
    location: str
    manifest: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


# --- config and scope -------------------------------------------------------------------------


def _one_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


HexList = Annotated[
    list[Annotated[HexStr, AfterValidator(str.lower)]],
    Field(min_length=1, max_length=1000),
    BeforeValidator(_one_or_list),
]
PositiveCount = Annotated[int, Field(ge=1, le=INT_MAX)]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)]


class IngestConfig(StrictModel):
    """A cryo_ingest job's config. Content options (hashed into the prefix) and tuning options
    (not hashed) are Cryo's own names."""

    chain_id: ChainId
    dataset: Literal["blocks", "transactions", "logs", "traces"]
    rpc_pool: PoolName | None = None
    rpc_url: HttpUrl | None = None
    max_files: PositiveCount = DEFAULT_MAX_FILES
    max_bytes: Annotated[int, Field(ge=1, le=BIGINT_MAX)] = DEFAULT_MAX_BYTES
    # content options
    contract: HexList | None = None
    topic0: HexList | None = None
    topic1: HexList | None = None
    topic2: HexList | None = None
    topic3: HexList | None = None
    chunk_size: PositiveCount | None = None
    row_group_size: PositiveCount | None = None
    exclude_failed: bool | None = None
    # tuning options
    requests_per_second: PositiveCount | None = None
    max_concurrent_requests: PositiveCount | None = None
    max_concurrent_chunks: PositiveCount | None = None
    max_retries: Annotated[int, Field(ge=0, le=1000)] | None = None
    initial_backoff: PositiveCount | None = None
    inner_request_size: PositiveCount | None = None

    @property
    def content_options(self) -> dict[str, Any]:
        """Hashed: what changes the partition's content."""
        return self.model_dump(include=set(CONTENT_OPTIONS), exclude_none=True)

    @property
    def cryo_options(self) -> dict[str, Any]:
        """What Cryo is asked for: exactly the canonical columns, hex-encoded, plus the
        content options that are Cryo's (filters, chunking) and the tuning ones."""
        own = {k: v for k, v in self.content_options.items() if k not in WRITER_OPTIONS}
        return {
            **chain_schema.CRYO_OPTIONS,
            "columns": chain_schema.cryo_columns(self.dataset),
            **own,
            **self.tuning_options,
        }

    @property
    def tuning_options(self) -> dict[str, Any]:
        given = self.model_dump(include=set(TUNING_OPTIONS), exclude_none=True)
        return {**DEFAULT_TUNING_OPTIONS, **given}


def _config_rules(raw: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    if (raw.get("rpc_pool") is None) == (raw.get("rpc_url") is None):
        problems.append(("", "set exactly one of rpc_pool (a pool name) or rpc_url"))
    filters = [k for k in _HEX_LIST_OPTIONS if k in raw]
    if filters and raw.get("dataset") in DATASETS and raw.get("dataset") != "logs":
        problems.append((filters[0], "contract/topic filters apply to the logs dataset only"))
    return problems


def config_parse(config: Mapping[str, Any]) -> IngestConfig:
    """Validate the job config strictly; every error names the field."""
    return validate(
        IngestConfig,
        dict(config),
        rules=_config_rules,
        prefix="config",
        error=ConfigError,
    )


def _identity(config: IngestConfig) -> dict[str, Any]:
    return cold_layout.config_identity(
        chain_id=config.chain_id,
        chain=chain_settings(config.chain_id).name,
        dataset=config.dataset,
        options=config.content_options,
    )


def content_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """What decides the output's bytes, so what defines its dataset version: the partition
    identity (chain, dataset, content options), not the RPC source or throughput knobs."""
    return _identity(config_parse(config))


# Trusted code: it writes content-addressed chain data every org shares.
RUNTIMES = ("platform",)


def output_prefixes(
    config: Mapping[str, Any], range_start: int | None, range_end: int | None
) -> list[str]:
    """Where a task of this job may publish: exactly its range's partition prefix (its
    version prefix when the task has no range). Chain data is the same for everyone, so it is
    content-addressed at the store root, not per org."""
    parsed = config_parse(config)
    config_hash = cold_layout.config_hash(_identity(parsed))
    if range_start is not None and range_end is not None and 0 <= range_start < range_end:
        partition = cold_layout.ColdPartition(
            chain_id=parsed.chain_id,
            chain=chain_settings(parsed.chain_id).name,
            dataset=parsed.dataset,
            config_hash=config_hash,
            range_start=range_start,
            range_end=range_end,
        )
        return [partition.prefix]
    return [
        cold_layout.version_prefix(
            chain_id=parsed.chain_id, dataset=parsed.dataset, config_hash=config_hash
        )
    ]


def scope_range(ctx: TaskContext) -> tuple[int, int]:
    start, end = ctx.scope.range_start, ctx.scope.range_end
    if start is None or end is None:
        raise PermanentError("cryo_ingest needs a block range scope (range_start, range_end)")
    if not isinstance(start, int) or not isinstance(end, int) or start < 0 or end <= start:
        raise PermanentError(f"invalid block range [{start}, {end}): need 0 <= start < end")
    return start, end


# --- staging ----------------------------------------------------------------------------------


def staging_root(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    raw = env.get(STAGING_DIR_ENV, "").strip()
    base = Path(raw).resolve() if raw else trace_home(env) / "staging"
    return base / STAGING_SUBDIR


def staging_clean_stale(root: Path, *, task_id: int, attempt: int) -> list[Path]:
    """Remove staging dirs this attempt supersedes: earlier attempts of the same task (their
    lease is gone, or we could not have claimed), and any over a day old (a crashed worker's)."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in root.iterdir():
        match = _STAGING_NAME.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        earlier_attempt = int(match[1]) == task_id and int(match[2]) < attempt
        try:
            old = now - entry.stat().st_mtime > STALE_STAGING_SECONDS
        except FileNotFoundError:
            continue
        if earlier_attempt or old:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def staging_create(root: Path, *, task_id: int, attempt: int) -> Path:
    """A fresh 0700 directory only this attempt writes to."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a shared root owned by someone else
        root.chmod(0o700)
    path = Path(tempfile.mkdtemp(prefix=f"task-{task_id}-attempt-{attempt}-", dir=root))
    path.chmod(0o700)  # mkdtemp already does; the umask cannot widen it, but be explicit
    return path


# --- talking to the node and to Cryo ----------------------------------------------------------


def rpc_endpoints(config: IngestConfig) -> tuple[list[str], int | None]:
    """The URLs to try in order and the pool's per-endpoint rate limit (if any)."""
    if config.rpc_url is not None:
        return [config.rpc_url], None
    try:
        pool = rpc_pool_config_from_env(config.rpc_pool or "")
    except LookupError as exc:
        raise PermanentError(str(exc)) from None
    # Cryo takes whole requests per second; never round a configured limit down to "none".
    rps = max(1, int(pool.rps_per_endpoint)) if pool.rps_per_endpoint else None
    return list(pool.endpoints), rps


def node_check(url: str, *, chain_id: int, last_block: int) -> str | None:
    """None if the endpoint serves `chain_id` and has `last_block`; else why not. A node on
    another chain is a config error, so that one raises."""
    try:
        with RpcPool("cryo_ingest", [url], timeout=10.0, max_retries=1) as pool:
            answered_chain, head = pool.batch([("eth_chainId", []), ("eth_blockNumber", [])])
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if int(answered_chain, 16) != chain_id:
        raise PermanentError(
            f"RPC endpoint {redact_url(url)} serves chain {int(answered_chain, 16)}, "
            f"config.chain_id is {chain_id}"
        )
    if int(head, 16) < last_block:
        return f"head is {int(head, 16)}, range needs block {last_block}"
    return None


def warm_up() -> None:
    """Import Cryo and pyarrow's Parquet module now (a worker process starting): about 50 ms
    a process that would otherwise be the first task's."""
    import cryo  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def cryo_version() -> str:
    import cryo

    return str(cryo.__version__)


def cryo_freeze(
    *,
    dataset: str,
    start: int,
    end: int,
    url: str,
    output_dir: Path,
    chain: str,
    options: Mapping[str, Any],
    dry: bool = False,
) -> dict[str, int] | None:
    """One `cryo.async_freeze` call, on a private event loop in the calling thread.

    `cryo.freeze` runs the coroutine through a new thread pool on an event loop it never
    closes, and on any RuntimeError falls back to `asyncio.run` of the same, already awaited
    coroutine (so a real RuntimeError surfaces as "cannot reuse already awaited coroutine");
    `asyncio.run(cryo.async_freeze(...))` gives one attempt, its real error and a closed loop.
    `blocks` is end-exclusive (`a:b`); `network_name` sets the chain label in file names; no
    report file, because Cryo writes the full RPC URL (with any API key in it) into it."""
    import cryo

    coroutine = cryo.async_freeze(
        dataset,
        blocks=[f"{start}:{end}"],
        rpc=url,
        output_dir=str(output_dir),
        network_name=chain,
        verbose=False,
        no_report=True,
        dry=dry,
        **options,
    )
    return asyncio.run(coroutine)


def in_thread(ctx: TaskContext, name: str, fn: Callable[[], Any]) -> Any:
    """Run `fn` in a daemon thread while this one watches the lease. Cryo cannot be
    interrupted, so a lost lease (or the job timeout, which the reaper turns into one) leaves
    the extraction to finish or fail on its own while the operator stops at once."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"{name}-{ctx.task_id}", daemon=True).start()
    while not done.wait(0.1):
        ctx.check_lease()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def extract(
    ctx: TaskContext,
    config: IngestConfig,
    *,
    start: int,
    end: int,
    chain: str,
    output_dir: Path,
) -> str:
    """Run Cryo into `output_dir`, failing over across endpoints; returns the endpoint used
    (redacted). Cryo 0.3.2 reports every argument or connection problem as a bare
    `TypeError('failed')` and a failed chunk only as a count, so we check the node ourselves
    first and tell bad options apart with a dry run against a node known to answer."""
    urls, pool_rps = rpc_endpoints(config)
    options = config.cryo_options
    if pool_rps and "requests_per_second" not in options:
        options["requests_per_second"] = pool_rps
    problems: dict[str, str] = {}
    not_ready = 0
    options_checked = False
    for url in urls:
        where = redact_url(url)
        problem = node_check(url, chain_id=config.chain_id, last_block=end - 1)
        if problem:
            not_ready += problem.startswith("head is")
            problems[where] = problem
            continue
        freeze = dict(
            dataset=config.dataset,
            start=start,
            end=end,
            url=url,
            output_dir=output_dir,
            chain=chain,
            options=options,
        )
        if not options_checked:
            try:
                in_thread(ctx, "cryo-dry", lambda f=freeze: cryo_freeze(**f, dry=True))
            except TypeError as exc:
                if node_check(url, chain_id=config.chain_id, last_block=end - 1) is None:
                    raise PermanentError(
                        f"cryo rejected the options {sorted(options)} for {config.dataset} "
                        f"({exc}); check column names and option values"
                    ) from None
                problems[where] = f"cryo could not start: {exc}"
                continue
            options_checked = True
        shutil.rmtree(output_dir, ignore_errors=True)
        output_dir.mkdir(mode=0o700)
        try:
            summary = in_thread(ctx, "cryo", lambda f=freeze: cryo_freeze(**f))
        except (TypeError, ValueError, OSError, RuntimeError) as exc:
            problems[where] = f"cryo failed: {type(exc).__name__}: {exc}"
            continue
        errored = (summary or {}).get("n_errored", 0)
        if errored:
            problems[where] = f"cryo reported {errored} errored chunk(s)"
            continue
        return where
    detail = "; ".join(f"{u}: {p}" for u, p in problems.items())
    if not_ready == len(urls):
        raise RangeNotReady(f"no endpoint has block {end - 1} yet ({detail})")
    raise CryoFailed(f"cryo could not extract {config.dataset} [{start}, {end}): {detail}")


# --- the operator -----------------------------------------------------------------------------


def run(ctx: TaskContext) -> IngestResult:
    config = config_parse(ctx.config)
    start, end = scope_range(ctx)
    chain = chain_settings(config.chain_id).name
    identity = _identity(config)
    partition = cold_layout.ColdPartition(
        chain_id=config.chain_id,
        chain=chain,
        dataset=config.dataset,
        config_hash=cold_layout.config_hash(identity),
        range_start=start,
        range_end=end,
    )
    expected = partition.file_names(config.content_options.get("chunk_size"))
    if len(expected) > config.max_files:
        raise PermanentError(
            f"{config.dataset} [{start}, {end}) would be {len(expected)} files, over "
            f"max_files={config.max_files}: use a larger chunk_size, a smaller range or a "
            "higher max_files"
        )
    store = object_store_from_env()
    root = staging_root()
    for stale in staging_clean_stale(root, task_id=ctx.task_id, attempt=ctx.attempt):
        log.info("removed stale staging dir %s", stale)
    staging = staging_create(root, task_id=ctx.task_id, attempt=ctx.attempt)
    seconds: dict[str, float] = {}
    try:
        began = time.monotonic()
        output_dir = staging / "cryo"
        endpoint = extract(ctx, config, start=start, end=end, chain=chain, output_dir=output_dir)
        seconds["extract"] = time.monotonic() - began
        began = time.monotonic()
        files = canonical_files(
            _staged_files(output_dir, expected),
            dataset=config.dataset,
            into=staging / "canonical",
            row_group_rows=config.row_group_size or DEFAULT_ROW_GROUP_ROWS,
        )
        seconds["canonical"] = time.monotonic() - began
        _check_caps(config, files, start, end)
        began = time.monotonic()
        manifest = cold_layout.manifest_build(
            partition=partition,
            identity=identity,
            paths=list(files.values()),
            producer={"extractor": "cryo", "version": cryo_version()},
        )
        seconds["manifest"] = time.monotonic() - began
        if config.dataset == "blocks" and manifest["row_count"] != end - start:
            raise CryoFailed(
                f"cryo wrote {manifest['row_count']} blocks for [{start}, {end}) from {endpoint}"
            )
        ctx.check_lease()
        began = time.monotonic()
        try:
            published = cold_layout.partition_publish(
                store=store,
                partition=partition,
                files=files,
                manifest=manifest,
                before_write=ctx.check_lease,
            )
        except cold_layout.PartitionConflict as exc:
            raise PermanentError(str(exc)) from None
        seconds["publish"] = time.monotonic() - began
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    committed = published.manifest
    ctx.outputs = [
        {
            "output": 0,
            "partition_key": ctx.scope.partition_key or partition.partition_key,
            "range_start": start,
            "range_end": end,
            "attributes": {"chain_id": config.chain_id, "dataset": config.dataset},
            "publication": {
                "location": published.location,
                "row_count": committed["row_count"],
                "bytes": committed["bytes"],
                "config_hash": partition.config_hash,
                "schema_hash": committed["schema_hash"],
                "manifest": committed,
            },
        }
    ]
    log.info(
        "cryo_ingest %s [%s, %s): %s at %s (%s rows, %s bytes) via %s in %s",
        config.dataset,
        start,
        end,
        published.status,
        published.location,
        committed["row_count"],
        committed["bytes"],
        endpoint,
        {k: round(v, 3) for k, v in seconds.items()},
    )
    return IngestResult(published.status, published.location, committed, seconds)


def canonical_files(
    files: Mapping[str, Path], *, dataset: str, into: Path, row_group_rows: int
) -> dict[str, Path]:
    """Cryo's files rewritten to the one chain schema (trace_chain/chain_schema.py), same
    names: renamed and typed columns, sorted by the dataset's key, statistics written."""
    import pyarrow.parquet as pq

    into.mkdir(mode=0o700)
    out = {}
    for name, path in files.items():
        try:
            table = chain_schema.cryo_to_canonical(pq.read_table(path), dataset)
        except ValueError as exc:
            raise CryoFailed(f"cryo's {name} does not fit the chain schema: {exc}") from None
        out[name] = into / name
        chain_schema.parquet_write(table, out[name], row_group_rows=row_group_rows)
    return out


def _staged_files(output_dir: Path, expected: Sequence[str]) -> dict[str, Path]:
    """The Parquet files Cryo wrote, which must be exactly the chunks we expect: a missing one
    would publish a hole, an extra one something we cannot name."""
    found = sorted(p.name for p in output_dir.glob("*.parquet"))
    if found != sorted(expected):
        raise CryoFailed(f"cryo wrote {found}, expected {sorted(expected)}")
    return {name: output_dir / name for name in found}


def _check_caps(config: IngestConfig, files: Mapping[str, Path], start: int, end: int) -> None:
    """The file cap was enforced before extraction (and `_staged_files` pinned the names);
    the byte cap can only be checked once Cryo has written."""
    total = sum(p.stat().st_size for p in files.values())
    if total > config.max_bytes:
        raise PermanentError(
            f"{config.dataset} [{start}, {end}) produced {total} bytes, over "
            f"max_bytes={config.max_bytes}; split the range or raise max_bytes; "
            "nothing was uploaded"
        )
