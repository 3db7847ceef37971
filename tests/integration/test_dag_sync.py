"""Deploying DAGs: sync_dag and the /v1/dags endpoints share one service; versions dedupe by
content, invalid documents name the field, activation and rollback move one pointer."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.dags import noop_dag
from trace_web.datasets.models import Dataset, DatasetVersion
from trace_web.orchestration.models import DagPointer, DagVersion, Job, JobInput
from trace_web.orchestration.services.dags import dag_sync


@pytest.fixture
def dag_file(tmp_path):
    def write(text, name="dag.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_sync_dag_command_creates_then_dedupes(org, dag_file, capsys):
    path = dag_file(noop_dag())
    call_command("sync_dag", str(path), "--org", org.slug, "--activate")
    assert "chain v1: created" in capsys.readouterr().out
    call_command("sync_dag", str(dag_file("# a comment\n" + noop_dag())), "--org", org.slug)
    assert "chain v1: unchanged" in capsys.readouterr().out
    assert DagVersion.objects.filter(org=org, name="chain").count() == 1
    version = DagVersion.objects.get()
    assert DagPointer.objects.get(org=org, name="chain").current == version
    jobs = {j.name: j for j in Job.objects.filter(dag_version=version)}
    assert set(jobs) == {"extract", "transform"}
    edge = JobInput.objects.get(job=jobs["transform"])
    assert (edge.from_job, edge.from_output) == (jobs["extract"], 0)
    assert Dataset.objects.filter(org=org, dag_name="chain").count() == 2


def test_invalid_dag_is_refused_naming_the_field(org, dag_file):
    bad = noop_dag().replace("from: {job: extract, output: 0}", "from: {job: nope, output: 0}")
    with pytest.raises(CommandError) as excinfo:
        call_command("sync_dag", str(dag_file(bad)), "--org", org.slug)
    assert "jobs[1].inputs[0].from.job" in str(excinfo.value)
    assert "nope" in str(excinfo.value)
    assert not DagVersion.objects.exists()


def test_api_post_invalid_dag_lists_errors(api):
    bad = "name: bad\njobs:\n  - {name: a, activation: sometimes, operator: noop, colour: red}\n"
    response = api.post("/v1/dags/bad/versions", {"yaml": bad}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert any(e.startswith("jobs[0].activation") for e in errors)
    assert any(e.startswith("jobs[0].colour") and "unknown field" in e for e in errors)


def test_api_versions_activate_and_rollback(api, org):
    v1 = api.post("/v1/dags/chain/versions", {"yaml": noop_dag(), "activate": True}, format="json")
    assert v1.status_code == 201 and v1.json()["version"] == 1
    again = api.post("/v1/dags/chain/versions", {"yaml": noop_dag()}, format="json")
    assert again.status_code == 200 and again.json()["created"] is False
    v2_yaml = noop_dag(extract_config="{sleep_seconds: 1}")
    v2 = api.post("/v1/dags/chain/versions", {"yaml": v2_yaml, "activate": True}, format="json")
    assert v2.json()["version"] == 2
    listing = api.get("/v1/dags/chain/versions").json()
    assert [(v["version"], v["active"]) for v in listing] == [(2, True), (1, False)]
    rolled = api.put("/v1/dags/chain/active", {"rollback": True}, format="json").json()
    assert rolled == {"name": "chain", "active_version": 1, "previous_version": 2}
    pointer = DagPointer.objects.get(org=org, name="chain")
    assert pointer.current.version == 1
    forward = api.put("/v1/dags/chain/active", {"version": 2}, format="json")
    assert forward.json()["active_version"] == 2
    missing = api.put("/v1/dags/chain/active", {"version": 9}, format="json")
    assert missing.status_code == 404


def test_yaml_body_and_name_mismatch(api):
    ok = api.generic(
        "POST", "/v1/dags/chain/versions?activate=true", noop_dag(), content_type="application/yaml"
    )
    assert ok.status_code == 201
    wrong = api.post("/v1/dags/other/versions", {"yaml": noop_dag()}, format="json")
    assert wrong.status_code == 400
    assert "name" in wrong.json()["detail"]


def test_config_change_starts_a_new_dataset_version(org, api):
    api.post("/v1/dags/chain/versions", {"yaml": noop_dag()}, format="json")
    api.post(
        "/v1/dags/chain/versions",
        {"yaml": noop_dag(extract_config="{sleep_seconds: 2}")},
        format="json",
    )
    extract = Dataset.objects.get(org=org, job_name="extract")
    transform = Dataset.objects.get(org=org, job_name="transform")
    assert DatasetVersion.objects.filter(dataset=extract).count() == 2
    assert DatasetVersion.objects.filter(dataset=transform).count() == 1


def test_publish_registers_named_dataset_and_refuses_a_taken_name(api, org):
    published = (
        noop_dag() + "publish:\n  events.clean: {job: transform, output: 0, storage: jsonl}\n"
    )
    assert (
        api.post("/v1/dags/chain/versions", {"yaml": published}, format="json").status_code == 201
    )
    dataset = Dataset.objects.get(org=org, published_name="events.clean")
    assert (dataset.job_name, dataset.storage_kind) == ("transform", "jsonl")
    names = [d["name"] for d in api.get("/v1/datasets").json()]
    assert "events.clean" in names
    clash = noop_dag("other") + "publish:\n  events.clean: {job: extract, output: 0}\n"
    response = api.post("/v1/dags/other/versions", {"yaml": clash}, format="json")
    assert response.status_code == 400
    assert "publish.events.clean" in response.json()["detail"]
    assert not DagVersion.objects.filter(name="other").exists()  # rejected whole


FOLLOWER_DAG = """
name: follow
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    update_strategy: replace
    config: {config}
"""


def test_operator_config_is_checked_at_deploy_naming_the_field(api):
    bad = FOLLOWER_DAG.format(config="{chain_id: '1', rpc_pool: main, batch_sise: 5}")
    response = api.post("/v1/dags/follow/versions", {"yaml": bad}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [  # every problem of the config at once
        "jobs[0].config.chain_id: must be an integer, got '1'",
        "jobs[0].config.batch_sise: unknown field",
    ]
    huge = FOLLOWER_DAG.format(config="{chain_id: 1, rpc_pool: main, start_block: .inf}")
    (error,) = api.post("/v1/dags/follow/versions", {"yaml": huge}, format="json").json()["errors"]
    assert error == "jobs[0].config.start_block: numbers must be finite"
    huge = FOLLOWER_DAG.format(config=f"{{chain_id: {2**63}, rpc_pool: main}}")
    (error,) = api.post("/v1/dags/follow/versions", {"yaml": huge}, format="json").json()["errors"]
    assert error == f"jobs[0].config.chain_id: must be <= {2**63 - 1}"
    cryo = noop_dag().replace("operator: noop", "operator: cryo_ingest", 1)
    cryo = cryo.replace("config: {}", "config: {chain_id: 1, dataset: state_diffs, rpc_pool: p}", 1)
    (error,) = api.post("/v1/dags/chain/versions", {"yaml": cryo}, format="json").json()["errors"]
    assert error.startswith("jobs[0].config.dataset: must be one of 'blocks'")
    for contract, expected in (
        ("[1]", "jobs[0].config.contract[0]: must be a string, got 1"),
        ("5", "jobs[0].config.contract: must be a list"),
        ("[]", "jobs[0].config.contract: must not be empty"),
        ("'0xzz'", "jobs[0].config.contract[0]: must be a 0x-hex string"),
    ):
        filters = cryo.replace("dataset: state_diffs", f"dataset: logs, contract: {contract}")
        response = api.post("/v1/dags/chain/versions", {"yaml": filters}, format="json")
        assert response.json()["errors"] == [expected], contract
    wrong = cryo.replace("dataset: state_diffs", "dataset: blocks, contract: '0x11', rpc_url: x")
    response = api.post("/v1/dags/chain/versions", {"yaml": wrong}, format="json")
    assert response.json()["errors"] == [
        "jobs[0].config.rpc_url: must match ^https?://\\S+$",
        "jobs[0].config: set exactly one of rpc_pool (a pool name) or rpc_url",
        "jobs[0].config.contract: contract/topic filters apply to the logs dataset only",
    ]
    in_udf = FOLLOWER_DAG.format(config="{chain_id: 1, rpc_pool: main}").replace(
        "operator: block_follower",
        "operator: block_follower\n    runtime: udf\n    udf: {bundle: b, entrypoint: e}",
    )
    errors = api.post("/v1/dags/follow/versions", {"yaml": in_udf}, format="json").json()["errors"]
    assert errors == [
        "jobs[0].runtime: an always_on source runs only in the 'platform' runtime",
        "jobs[0].runtime: operator 'block_follower' runs only in ['platform']",
    ]
    unknown = noop_dag().replace("operator: noop", "operator: nope", 1)
    (error,) = api.post("/v1/dags/chain/versions", {"yaml": unknown}, format="json").json()[
        "errors"
    ]
    assert error.startswith("jobs[0].operator: unknown operator 'nope'; known: alert_evaluate, ")
    assert not DagVersion.objects.exists()


def test_only_content_config_changes_start_a_new_dataset_version(org, api):
    def deploy(config):
        yaml = FOLLOWER_DAG.format(config=config)
        response = api.post("/v1/dags/follow/versions", {"yaml": yaml}, format="json")
        assert response.status_code in (200, 201), response.json()
        return response.json()["version"]

    deploy("{chain_id: 1, rpc_pool: main}")
    # Another pool and other throughput knobs: a new DAG version, the same dataset version.
    assert deploy("{chain_id: 1, rpc_pool: backup, batch_size: 10, poll_interval_seconds: 1}") == 2
    follow = Dataset.objects.get(org=org, job_name="follow")
    assert DatasetVersion.objects.filter(dataset=follow).count() == 1
    deploy("{chain_id: 1, rpc_pool: main, start_block: 100}")
    assert DatasetVersion.objects.filter(dataset=follow).count() == 2


def test_yaml_body_that_is_not_utf8_is_a_400(api):
    response = api.generic(
        "POST", "/v1/dags/chain/versions", b"name: \xff\xfe\n", content_type="application/yaml"
    )
    assert response.status_code == 400
    assert "not UTF-8" in response.json()["detail"]
    assert not DagVersion.objects.exists()


# Every DAG of the demo (deploy/demo also holds a chain_sync and the alerts file, each checked
# by its own tests: test_chain_sync.py, tests/alerts/test_apply.py).
DEMO_DAGS = sorted((Path(__file__).parents[2] / "deploy" / "demo").glob("*_dag.yaml"))
assert len(DEMO_DAGS) >= 3


@pytest.mark.parametrize("path", DEMO_DAGS, ids=lambda p: p.name)
def test_every_demo_dag_deploys(org, path):
    """`trace lite up` deploys these: each must pass every check a user's DAG does."""
    result = dag_sync(org=org, yaml_text=path.read_text(), activate=True)
    assert result.version.jobs.count() >= 1
