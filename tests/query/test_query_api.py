"""POST /v1/query and /v1/task/query end to end: a follower's hot rows and a Cryo backfill's
cold partitions of one anvil chain, read as one relation by the org whose datasets they are,
by no other org, by no role their read_roles exclude; refusals say why; every query audited
by its hash, never its text."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from django.utils import timezone
from rest_framework.test import APIClient

from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from tests.chain.test_cryo_ingest import ingest
from trace_chain import chain_schema, devchain
from trace_chain.query.audit import query_audit
from trace_operators.cryo_ingest import DATASETS as BACKFILL_DATASETS
from trace_web.datasets.models import Dataset, PartitionVersion
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orgs.models import Role

CHAIN = devchain.ANVIL_CHAIN_ID
FOLLOW = f"""
name: follow
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {CHAIN}, rpc_pool: devchain}}
publish:
  chain.hot: {{job: follow, read_roles: [admin, member]}}
"""
BACKFILL = """
name: backfill
jobs:
""" + "".join(
    f"""  - name: {ds}
    activation: manual
    operator: cryo_ingest
    config: {{chain_id: {CHAIN}, dataset: {ds}, rpc_pool: devchain}}
"""
    for ds in BACKFILL_DATASETS
)


@pytest.fixture
def world(org, fresh_anvil, hot_engine, cold, settings):
    """acme follows the chain (hot rows from block 0) and backfilled [0, line) to Parquet;
    then compaction's delete moved the line, so history is cold below it and hot above."""
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    traffic = devchain.generate_traffic(fresh_anvil.url, blocks=10, txs_per_block=3)
    catch_up(make_follower(fresh_anvil.url, hot_engine, Recorder(), org_id=org.pk))
    dag_sync(org=org, yaml_text=FOLLOW, activate=True)
    dag_sync(org=org, yaml_text=BACKFILL, activate=True)
    line = traffic.first_block + 5
    for dataset in BACKFILL_DATASETS:
        _, result = ingest(fresh_anvil.url, dataset, 0, line)
        version = Dataset.objects.get(org=org, job_name=dataset).versions.get()
        PartitionVersion.objects.create(
            dataset_version=version,
            partition_key=f"0_{line}",
            range_start=0,
            range_end=line,
            location=result.location,
            manifest=result.manifest,
        )
    from trace_chain.hot_schema import hot_blocks, hot_logs, hot_transactions

    with hot_engine.begin() as conn:
        for table in (hot_logs, hot_transactions, hot_blocks):
            conn.execute(table.delete().where(table.c.block_number < line))
    return {"tip": traffic.last_block, "line": line, "url": fresh_anvil.url}


def query(client, sql, **body):
    return client.post("/v1/query", {"sql": sql, **body}, format="json")


def test_a_query_reads_cold_and_hot_history_as_one_relation(world, org, client_for, hot_engine):
    member = client_for(org, Role.MEMBER)
    response = query(member, "SELECT count(*) AS n, min(block_number) AS lo FROM blocks")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["rows"] == [[world["tip"] + 1, 0]]
    assert body["columns"] == [{"name": "n", "type": "int64"}, {"name": "lo", "type": "int64"}]
    assert body["relations"] == ["blocks"] and body["truncated"] is False
    hashes = query(member, "SELECT block_hash FROM blocks ORDER BY block_number LIMIT 1")
    assert hashes.json()["rows"][0][0].startswith("0x")  # hex, as stored
    wei = query(member, "SELECT sum(value) AS v FROM transactions").json()
    assert isinstance(wei["rows"][0][0], str)  # exact, not a rounded float
    with hot_engine.connect() as conn:
        audit = conn.execute(sa.select(query_audit)).mappings().all()
    assert [a["outcome"] for a in audit] == ["ok", "ok", "ok"]
    assert all(len(a["sql_sha256"]) == 64 for a in audit)
    assert "SELECT" not in str(list(audit[0].values()))  # the hash, never the text


def test_formats_and_truncation(world, org, client_for):
    member = client_for(org, Role.MEMBER)
    page = query(member, "SELECT block_number FROM blocks ORDER BY 1", max_rows=3).json()
    assert [r[0] for r in page["rows"]] == [0, 1, 2] and page["truncated"] is True
    csv = query(member, "SELECT block_number FROM blocks ORDER BY 1 LIMIT 2", format="csv")
    assert csv["Content-Type"].startswith("text/csv")
    assert csv.content.decode().splitlines() == ['"block_number"', "0", "1"]
    arrow = query(member, "SELECT block_number FROM blocks ORDER BY 1", format="arrow")
    table = pa.ipc.open_stream(io.BytesIO(arrow.content)).read_all()
    assert table.column("block_number").to_pylist() == list(range(world["tip"] + 1))


def test_another_org_and_a_role_without_read_see_none_of_it(world, org, other_org, client_for):
    globex = client_for(other_org, Role.ADMIN)
    assert query(globex, "SELECT count(*) FROM blocks").json()["rows"] == [[0]]
    # acme's hot dataset is readable by admin and member only; its backfill by every role.
    viewer = client_for(org, Role.VIEWER)
    seen = query(viewer, "SELECT count(*) FROM blocks").json()["rows"][0][0]
    assert seen == world["line"]  # the cold backfill only: no hot rows above the line


@pytest.mark.parametrize(
    "sql, code",
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "table_function"),
        ("SELECT * FROM hot.public.hot_blocks", "qualified_name"),
        ("SELECT * FROM secrets", "unknown_relation"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("ATTACH 'x.db' AS x", "not_a_query"),
    ],
)
def test_a_refused_query_says_why_and_is_audited(world, org, client_for, hot_engine, sql, code):
    response = query(client_for(org, Role.MEMBER), sql)
    assert response.status_code == 400
    assert response.json()["error"] == "query_refused"
    assert response.json()["errors"][0].endswith(f"({code})")
    with hot_engine.connect() as conn:
        (row,) = conn.execute(sa.select(query_audit)).mappings().all()
    assert (row["outcome"], row["code"]) == ("refused", code)


def user_of(org, role=Role.MEMBER, name="someone-else"):
    from tests.conftest import _client_for

    return _client_for(org, role, username=name)


def download(client, url):
    response = client.get(url)
    assert response.status_code == 200, url
    return b"".join(response.streaming_content)


def test_a_result_past_the_inline_caps_is_exported_whole_for_who_ran_it(
    world, org, other_org, client_for, settings, hot_engine
):
    from trace_chain.object_store import object_store_from_env
    from trace_web.query.models import QueryResult
    from trace_web.query.services import query_results_prune

    settings.TRACE_QUERY_MAX_ROWS = 3
    member = client_for(org, Role.MEMBER)
    every = list(range(world["tip"] + 1))
    body = query(member, "SELECT block_number FROM blocks ORDER BY 1").json()
    export = body["export"]
    assert (body["rows"], body["row_count"], body["truncated"]) == ([], len(every), False)
    assert (export["format"], export["row_count"], export["truncated"]) == (
        "parquet",
        len(every),
        False,
    )
    assert export["url"] == f"/v1/query/results/{export['id']}"
    table = pq.read_table(io.BytesIO(download(member, export["url"])))
    assert table.column("block_number").to_pylist() == every
    assert export["bytes"] == QueryResult.objects.get(pk=export["id"]).bytes > 0
    # Only who ran it: not another member of the org, not another org.
    assert user_of(org).get(export["url"]).status_code == 404
    assert client_for(other_org, Role.ADMIN).get(export["url"]).status_code == 404

    # csv asks for a csv export; the byte cap exports too; the export's own cap truncates.
    settings.TRACE_QUERY_MAX_ROWS, settings.TRACE_QUERY_MAX_BYTES = 10_000, 64
    settings.TRACE_QUERY_EXPORT_MAX_ROWS = 5
    sql = "SELECT block_number FROM blocks ORDER BY 1"
    csv = query(member, sql, format="csv").json()["export"]
    assert (csv["format"], csv["row_count"], csv["truncated"]) == ("csv", 5, True)
    lines = download(member, csv["url"]).decode().splitlines()
    assert lines == ['"block_number"', *map(str, every[:5])]
    capped = query(member, sql, max_rows=4).json()  # a cap of the caller's: truncated inline
    assert "export" not in capped and capped["truncated"] is True
    assert [r[0] for r in capped["rows"]] == every[: len(capped["rows"])]
    assert 0 < len(capped["rows"]) <= 4  # as many as fit in 64 bytes
    with hot_engine.connect() as conn:
        rows = [r["rows"] for r in conn.execute(sa.select(query_audit)).mappings()]
    assert rows[:2] == [len(every), 5]

    QueryResult.objects.update(expires_at=timezone.now())
    assert member.get(export["url"]).status_code == 404  # expired
    assert query_results_prune() == 2
    assert not QueryResult.objects.exists()
    assert object_store_from_env().list("query-results/") == []


def test_a_failing_query_is_a_400_with_the_engines_reason(world, org, client_for):
    response = query(client_for(org, Role.MEMBER), "SELECT no_such_column FROM blocks")
    assert response.status_code == 400
    assert response.json()["error"] == "query_failed"
    assert "no_such_column" in response.json()["detail"]


def test_a_task_queries_exactly_its_pinned_inputs_while_its_attempt_lasts(world, org, settings):
    from trace_web.orchestration.services.tasks import (
        PinnedInput,
        task_claim,
        task_complete,
        task_create,
    )

    hot = Dataset.objects.get(org=org, published_name="chain.hot")
    consumer = dag_sync(
        org=org,
        activate=True,
        yaml_text="""
name: reader
jobs:
  - {name: read, activation: manual, operator: noop, outputs: 0}
""",
    ).version.jobs.get()
    task, _ = task_create(
        job=consumer,
        trigger="manual",
        inputs=[PinnedInput(dataset_id=hot.pk, dataset_version_id=hot.versions.get().pk)],
    )
    claimed = task_claim(task_id=task.pk, worker_id="w")
    runtime = APIClient()
    runtime.credentials(HTTP_AUTHORIZATION=f"Bearer {claimed.capability_token}")
    answer = runtime.post("/v1/task/query", {"sql": "SELECT count(*) FROM blocks"}, format="json")
    assert answer.status_code == 200, answer.json()
    # The hot dataset only: the blocks from the line up; the backfill was not pinned.
    assert answer.json()["rows"] == [[world["tip"] + 1 - world["line"]]]
    settings.TRACE_QUERY_MAX_ROWS = 2  # past it, the task's result is exported for the task
    sql = {"sql": "SELECT block_number FROM blocks ORDER BY 1"}
    export = runtime.post("/v1/task/query", sql, format="json").json()["export"]
    assert export["url"] == f"/v1/task/query/results/{export['id']}"
    table = pq.read_table(io.BytesIO(b"".join(runtime.get(export["url"]).streaming_content)))
    assert table.column(0).to_pylist() == list(range(world["line"], world["tip"] + 1))
    assert user_of(org).get(f"/v1/query/results/{export['id']}").status_code == 404
    task_complete(lease=claimed.lease)
    after = runtime.post("/v1/task/query", {"sql": "SELECT 1"}, format="json")
    assert after.status_code == 409 and after.json()["error"] == "stale_attempt"
    assert runtime.get(export["url"]).status_code == 409  # its attempt is over


def test_the_query_command_prints_the_same_rows_and_refuses_the_same_way(
    world, org, capsys, tmp_path, settings
):
    import json

    import pyarrow.parquet as pq
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("query", "SELECT count(*) AS n FROM blocks", "--org", org.slug, "--format", "json")
    assert json.loads(capsys.readouterr().out)["rows"] == [[world["tip"] + 1]]
    call_command("query", "SELECT 7 AS seven", "--org", org.slug)
    assert capsys.readouterr().out.splitlines() == ["seven", "-----", "7"]
    out = tmp_path / "b.parquet"
    call_command(
        "query", "SELECT block_number FROM blocks", "--org", org.slug,
        "--format", "parquet", "--output", str(out),
    )  # fmt: skip
    assert pq.read_table(out).num_rows == world["tip"] + 1
    settings.TRACE_QUERY_MAX_ROWS = 2  # to a file, past the inline cap: every row still
    out = tmp_path / "b.csv"
    call_command(
        "query", "SELECT block_number FROM blocks ORDER BY 1", "--org", org.slug,
        "--format", "csv", "--output", str(out),
    )  # fmt: skip
    assert out.read_text().splitlines()[1:] == [str(n) for n in range(world["tip"] + 1)]
    with pytest.raises(CommandError, match=r"query_refused: .*read_csv"):
        call_command("query", "SELECT * FROM read_csv('/etc/passwd')", "--org", org.slug)


def test_a_dataset_shows_its_schema_versions_and_extent_hot_and_cold(world, org, client_for):
    member = client_for(org, Role.MEMBER)
    hot = member.get("/v1/datasets/chain.hot")
    assert hot.status_code == 200, hot.json()
    body = hot.json()
    assert (body["name"], body["operator"], body["published"]) == (
        "chain.hot",
        "block_follower",
        True,
    )
    assert {c["relation"] for c in body["schema"]} == set(chain_schema.DATASETS)
    assert body["chain"]["compaction_line"] == world["line"]
    assert body["chain"]["hot"] == {"start": world["line"], "end": world["tip"] + 1}
    assert body["chain"]["cold"] is None
    assert [v["generation"] for v in body["versions"]] == [1]

    cold = member.get("/v1/datasets/backfill.blocks[0]").json()  # unpublished: its list name
    assert cold["operator"] == "cryo_ingest" and cold["chain"]["hot"] is None
    assert cold["chain"]["cold"] == {"start": 0, "end": world["line"], "partitions": 1, "gaps": []}
    assert cold["chain"]["compaction_line"] == world["line"]
    assert [c["name"] for c in cold["schema"]] == chain_schema.column_names("blocks")
    (version,) = cold["versions"]
    assert (version["partitions"], version["range_start"], version["range_end"]) == (
        1,
        0,
        world["line"],
    )


def test_a_dataset_the_caller_may_not_read_is_not_found(world, org, other_org, client_for):
    viewer = client_for(org, Role.VIEWER)  # chain.hot is read by admin and member only
    assert viewer.get("/v1/datasets/chain.hot").status_code == 404
    assert viewer.get("/v1/datasets/backfill.logs[0]").status_code == 200
    globex = client_for(other_org, Role.ADMIN)
    for name in ("chain.hot", "backfill.logs[0]"):
        response = globex.get(f"/v1/datasets/{name}")
        assert response.status_code == 404 and response.json()["error"] == "not_found"


REPORT = """
name: report
jobs:
  - name: daily
    activation: manual
    operator: duckdb_query
    inputs: [{{from: {{dataset: chain.hot}}}}]
    config: {config}
"""


def test_a_duckdb_query_job_publishes_its_rows_from_its_inputs_only(world, org):
    from trace_chain.object_store import object_store_from_env
    from trace_tasks.runner import task_run
    from trace_web.orchestration.models import Task
    from trace_web.orchestration.services.sources import job_run_manual

    sql = "SELECT block_number, block_hash FROM blocks ORDER BY 1"
    dag_sync(org=org, yaml_text=REPORT.format(config=f"{{sql: '{sql}'}}"), activate=True)
    task = job_run_manual(org=org, dag_name="report", job_name="daily")
    assert task_run(task_id=task.pk).status == "completed", Task.objects.get(pk=task.pk).error
    dataset = Dataset.objects.get(org=org, dag_name="report", job_name="daily")
    (partition,) = PartitionVersion.objects.filter(dataset_version__dataset=dataset)
    hot = list(range(world["line"], world["tip"] + 1))  # chain.hot only: not the backfill
    assert partition.row_count == len(hot) and partition.manifest["format"] == "parquet"
    prefix = partition.location.split("/objects/", 1)[1]
    assert prefix.startswith(f"orgs/{org.pk}/report/daily/")
    store = object_store_from_env()
    assert store.exists(prefix + "_SUCCESS")
    table = pq.read_table(io.BytesIO(store.get_bytes(prefix + "result.parquet")))
    assert table.column("block_number").to_pylist() == hot
    assert table.column("block_hash")[0].as_py().startswith("0x")
    (entry,) = partition.manifest["files"]
    from trace_chain.cold_layout import sha256_hex

    assert entry["sha256"] == sha256_hex(store.get_bytes(prefix + "result.parquet"))


def test_a_duckdb_query_job_refused_by_the_gate_is_refused_at_deploy(org):
    from trace_web.errors import ValidationFailed as DagSpecError

    bad = REPORT.format(config="{sql: \"SELECT * FROM read_csv('/etc/passwd')\"}")
    with pytest.raises(DagSpecError) as refused:
        dag_sync(org=org, yaml_text=bad, activate=True)
    assert any(e.startswith("jobs[0].config.sql: ") for e in refused.value.details)
    unknown = REPORT.format(config="{sql: 'SELECT 1', format: xml, max_rows: 0}")
    with pytest.raises(DagSpecError) as refused:
        dag_sync(org=org, yaml_text=unknown, activate=True)
    fields = {e.split(":")[0] for e in refused.value.details}
    assert {"jobs[0].config.format", "jobs[0].config.max_rows"} <= fields
