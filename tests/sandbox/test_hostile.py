"""The hostile handler corpus (tests/sandbox/hostile_cases.py) run in the sandbox: every
handler is stopped with a clear HandlerFailed (its code and a message saying why) and reaches
nothing it aims at — no secret, file, socket, database, process or chain state of the worker
— while the same handler run unsandboxed does reach its target, so each case is a real attack
and the sandbox is what stops it. Then handlers with the real channel: queries for what their
task was not granted (another org's dataset, the data and state databases' own tables, files)
are refused with the task query API's code and read none of it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.query import test_query_api
from tests.sandbox.hostile_cases import CASES, Case
from tests.sandbox.hostile_targets import HOSTILE_SLOT, SECRET_VAR, Targets, targets_open
from trace_tasks import sandbox

# Limits low enough that the corpus runs in seconds; cases lower them further.
BASE_LIMITS = {"wall_seconds": 20, "cpu_seconds": 10, "output_bytes": 1 << 20}


class RecordingChannel:
    """A TaskChannel that answers every query with no rows and records what it was asked."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.heartbeats = 0

    def query(self, sql: str) -> dict:
        self.queries.append(sql)
        return {"columns": [], "rows": [], "truncated": False}

    def heartbeat(self) -> None:
        self.heartbeats += 1


@pytest.fixture
def targets(anvil, monkeypatch):
    opened = targets_open(anvil.url)
    monkeypatch.setenv(SECRET_VAR, opened.secret)  # in the worker's own environment
    yield opened
    opened.close()


def run_sandboxed(case: Case, targets: Targets) -> tuple[Exception | None, str]:
    """The handler run as the udf operator runs one (a read-only bundle directory in a fresh
    temporary directory); the outcome and all the text it produced (rows, logs, error)."""
    with tempfile.TemporaryDirectory(prefix="trace-udf-") as tmp:
        bundle_dir = Path(tmp) / "bundle"
        bundle_dir.mkdir()
        (bundle_dir / "main.py").write_text(case.source)
        (bundle_dir / "main.py").chmod(0o444)
        bundle_dir.chmod(0o555)
        run = sandbox.HandlerRun(
            runtime="python",
            bundle_dir=bundle_dir,
            entrypoint="main",
            params=targets.params,
            range=(0, 10),
            limits=sandbox.SandboxLimits(**{**BASE_LIMITS, **case.limits}),
            slot=HOSTILE_SLOT,
        )
        try:
            result = sandbox.run_handler(run, RecordingChannel())
        except sandbox.HandlerFailed as exc:
            return exc, f"{exc.code} {exc} {getattr(exc, 'logs', '')}"
        except sandbox.SandboxUnavailable as exc:  # the handler's fault blamed on the sandbox
            exc.code = "SandboxUnavailable"
            return exc, f"{exc}"
        finally:
            bundle_dir.chmod(0o755)
        return None, json.dumps([result.rows, result.logs], default=str)


CONTROL_SHIM = r"""
import json, sys, types
source = sys.stdin.read()
module = types.ModuleType("main")
exec(compile(source, "main.py", "exec"), module.__dict__)
ctx = types.SimpleNamespace(
    params=json.loads(sys.argv[1]), range=(0, 10),
    query=lambda sql: {"columns": [], "rows": [], "truncated": False},
    log=lambda message: print(message, file=sys.stderr),
)
print(json.dumps(module.handle(ctx), default=str))
"""


def run_unsandboxed(case: Case, targets: Targets) -> str:
    """The same handler in a plain child of the worker (its environment, its uid). It runs
    under a shell that stays its parent (`; exit` keeps the shell from exec'ing it), so
    /proc/<ppid>/environ is an environment as it was at exec: the test process's own changes
    it in place as pytest sets PYTEST_CURRENT_TEST, which would make the control flaky."""
    shell = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
    done = subprocess.run(
        [*shell, sys.executable, "-c", CONTROL_SHIM, json.dumps(targets.params)],
        input=case.source,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_handler_is_stopped_and_reaches_nothing(case, targets):
    failed, text = run_sandboxed(case, targets)
    reached = targets.reached(text)
    assert reached == [], f"{case.id} ({case.aim}) reached {reached}: {text[:2000]}"
    if failed is None and case.bounded:
        assert len(text) <= case.bounded, f"{case.id}: kept {len(text)} bytes"
        return
    assert failed is not None, f"{case.id} ({case.aim}) was not stopped: {text[:2000]}"
    assert failed.code in case.codes, f"{case.id}: {failed.code}: {failed}"
    assert str(failed), f"{case.id}: HandlerFailed({failed.code}) says nothing"
    assert re.search(case.match, str(failed)), f"{case.id}: {failed.code}: {failed}"
    if case.control:
        # Without the sandbox, the same handler reaches what it aims at.
        control = run_unsandboxed(case, targets)
        assert case.control in targets.reached(control), f"{case.id} unsandboxed: {control}"


def test_the_corpus_has_an_attack_on_every_target_the_issue_names():
    assert len(CASES) >= 30
    ids = {case.id for case in CASES}
    for needed in [
        "env-os-environ",
        "env-proc-parent",
        "env-proc-1",
        "env-proc-every",
        "tcp4-postgres",
        "tcp6-postgres",
        "tcp4-redis",
        "tcp6-redis",
        "unix-pathname",
        "subprocess-psql",
        "read-project",
        "read-dotenv",
        "read-home",
        "fork-bomb",
        "memory-bomb",
        "cpu-loop",
        "sleep-forever",
        "ctypes-setuid",
        "ctypes-unshare-user",
        "kill-victim",
        "huge-output",
        "not-a-list",
        "channel-token",
        "channel-publish-other-task",
    ]:
        assert needed in ids, needed


# --- through the real channel: what the task was not granted -----------------------------------

world = test_query_api.world  # acme's follower hot rows and backfill of one anvil chain

QUERY_HANDLER = """
def handle(ctx):
    return [{"row": row} for row in ctx.query(ctx.params["sql"])["rows"]]
"""


def channel_dag(*, inputs: bool) -> str:
    grant = "    inputs: [{from: {dataset: chain.hot}}]\n" if inputs else ""
    return f"""
name: prying
jobs:
  - name: pry
    activation: manual
    runtime: udf
    operator: udf
    update_strategy: replace
    udf: {{bundle: "pry@1.0.0", entrypoint: main}}
    config: {{params: {{sql: "$SQL"}}}}
{grant}"""


@pytest.fixture
def _own_object_store(settings, tmp_path, monkeypatch):
    settings.TRACE_OBJECT_STORE_URL = (tmp_path / "objects").as_uri()
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def _cold_file(org) -> str:
    from trace_web.datasets.models import PartitionVersion

    partition = PartitionVersion.objects.filter(dataset_version__dataset__org=org).first()
    return partition.location.removeprefix("file://")


@pytest.mark.parametrize(
    ("who", "sql"),
    [
        ("other_org", "SELECT block_hash FROM blocks"),  # acme's dataset name, not granted
        ("other_org", "SELECT block_hash FROM hot_blocks"),  # the data DB's own table
        ("other_org", "SELECT block_hash FROM hot.public.hot_blocks"),
        ("other_org", "SELECT * FROM postgres_query('hot', 'SELECT block_hash FROM hot_blocks')"),
        ("other_org", "SELECT * FROM read_parquet('{cold}/*.parquet')"),  # acme's cold files
        ("other_org", "SELECT * FROM query('SELECT block_hash FROM hot_blocks')"),
        ("org", "SELECT block_hash FROM hot_blocks"),  # granted chain.hot, not its table
        ("org", "SELECT * FROM orchestration_task"),  # the state database's tasks
        ("org", "SELECT * FROM orgs_org"),
        ("org", "SELECT current_setting('pg_connection_string')"),
        ("org", "SELECT * FROM duckdb_settings()"),
        ("org", "SELECT block_hash FROM blocks; SELECT 1"),
    ],
)
def test_a_handler_reads_nothing_it_was_not_granted_through_its_channel(
    request, transactional_db, world, org, hot_engine, _own_object_store, who, sql
):
    from tests.udf_bundles import bundle
    from trace_tasks.runner import task_run
    from trace_web.orchestration.models import Task
    from trace_web.orchestration.services.dags import dag_sync
    from trace_web.orchestration.services.sources import job_run_manual
    from trace_web.udf.models import OutputBatch
    from trace_web.udf.services import bundle_upload

    runner = request.getfixturevalue(who)
    sql = sql.format(cold=_cold_file(org).rstrip("/"))
    bundle_upload(
        org=runner,
        data=bundle({"main.py": QUERY_HANDLER.encode()}, name="pry", version="1.0.0"),
    )
    yaml_text = channel_dag(inputs=runner == org).replace("$SQL", sql.replace('"', '\\"'))
    dag_sync(org=runner, yaml_text=yaml_text, activate=True)
    task = job_run_manual(org=runner, dag_name="prying", job_name="pry")
    status = task_run(task_id=task.pk, worker_id="udf").status
    task = Task.objects.get(pk=task.pk)
    with hot_engine.connect() as conn:
        hashes = [h for (h,) in conn.execute(sa.text("SELECT block_hash FROM hot_blocks"))]
    assert hashes
    if status == "completed":
        # An ungranted name the catalog still knows (`blocks` with no input pinned) is empty:
        # whatever was published holds none of acme's blocks.
        from django.conf import settings

        from trace_chain.object_store import object_store_from_url

        store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
        for batch in OutputBatch.objects.filter(task_id=task.pk):
            published = store.get_bytes(batch.location.removeprefix(store.uri(""))).decode()
            assert batch.row_count == 0 and not [h for h in hashes if h in published]
        return
    assert task.status == "Failed" and task.next_retry_at is None
    assert "handler failed (exception)" in task.error, task.error
    assert re.search(r"query_\w+|invalid", task.error), task.error
    assert not [h for h in hashes if h in task.error]
    assert not OutputBatch.objects.filter(task_id=task.pk).exists()
