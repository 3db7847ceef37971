"""`trace smoke` as an operator runs it (a subprocess): every check ok against the local
Postgres, Redis and file store, and against moto (SQS broker, S3 store, SNS); a dependency that
does not answer or is not migrated is a FAIL line naming the check, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import psycopg
import pytest
import redis
from psycopg import sql

from tests import processes
from tests.aws import REGION, aws_test_env, sqs_broker_env, sqs_depth, sqs_queues_create
from tests.chain.test_object_store import moto_s3_server as moto_server
from tests.chain.test_object_store import s3_bucket_create
from trace_chain.devchain import free_port
from trace_web.lite import services


def smoke(env: dict[str, str], *args: str) -> tuple[int, list[str], str]:
    """Exit code, stdout lines and stderr of `trace smoke` with `env` over this run's own."""
    proc = subprocess.run(
        [sys.executable, "-m", "trace_web.cli", "smoke", "--timeout", "5", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def statuses(lines: list[str]) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in lines}


@pytest.fixture
def local_env(db, _data_db_migrated, tmp_path) -> dict[str, str]:
    return {
        "TRACE_STATE_DB_URL": processes.test_state_db_url(),
        "TRACE_OBJECT_STORE_URL": (tmp_path / "objects").as_uri(),
    }


def test_every_check_passes_against_the_local_stack(local_env, tmp_path, settings):
    code, lines, stderr = smoke(local_env)
    assert code == 0, (lines, stderr)
    assert statuses(lines) == {
        "state-db": "ok",
        "data-db": "ok",
        "broker": "ok",
        "object-store": "ok",
        "sns": "skip",
    }
    # Nothing left behind: the temporary queue (and its binding) and the probe object.
    broker = redis.Redis.from_url(settings.TRACE_BROKER_URL)
    assert list(broker.scan_iter(match=f"{settings.TRACE_BROKER_KEY_PREFIX}*trace-smoke*")) == []
    assert list((tmp_path / "objects").rglob("*.bin")) == []


def test_every_check_fails_on_a_port_nobody_listens_on(local_env):
    dead = f"127.0.0.1:{free_port()}"
    code, lines, stderr = smoke(
        {
            "TRACE_STATE_DB_URL": f"postgres://postgres:hunter2@{dead}/trace_state",
            "TRACE_DATA_DB_URL": f"postgres://postgres@{dead}/trace_data",
            "TRACE_BROKER_URL": f"redis://{dead}/0",
            "TRACE_OBJECT_STORE_URL": "s3://smoke-bucket/x",
            "TRACE_S3_ENDPOINT_URL": f"http://{dead}",
            "TRACE_SNS_ENDPOINT_URL": f"http://{dead}",
            "TRACE_SMOKE_SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:smoke",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    assert code == 1
    assert statuses(lines) == dict.fromkeys(
        ["state-db", "data-db", "broker", "object-store", "sns"], "FAIL"
    )
    for line in lines:
        assert dead.split(":")[1] in line, line  # the reason says where it tried
    assert "Traceback" not in stderr and "Traceback" not in "\n".join(lines)
    assert "hunter2" not in "\n".join(lines)


def test_unmigrated_databases_fail_saying_which_command_fixes_them(local_env):
    server = services.server_url(os.environ["TRACE_DATA_DB_URL"])
    name = f"trace_smoke_empty_{free_port()}"
    admin = services.database_url(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        empty = services.database_url(server, name)
        code, lines, _ = smoke(
            {"TRACE_STATE_DB_URL": empty, "TRACE_DATA_DB_URL": empty},
            "--only",
            "state-db,data-db",
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    assert code == 1
    state, data = lines
    assert state.startswith("FAIL state-db") and "not applied" in state
    assert state.endswith("run `trace migrate`")
    assert data.startswith("FAIL data-db") and "at revision none" in data
    assert data.endswith("run `trace data-migrate`")


def test_every_check_passes_against_moto(local_env, monkeypatch):
    aws_test_env(monkeypatch)
    with moto_server() as endpoint:
        urls = sqs_queues_create(endpoint)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        smoke_queue = sqs.create_queue(QueueName=urls["platform"].rsplit("/", 1)[1] + "-smoke")
        bucket = s3_bucket_create(endpoint, monkeypatch)
        sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION)
        topic = sns.create_topic(Name="trace-smoke")["TopicArn"]
        env = {
            **local_env,
            **sqs_broker_env(endpoint, urls),
            "TRACE_SQS_SMOKE_QUEUE_URL": smoke_queue["QueueUrl"],
            "TRACE_OBJECT_STORE_URL": f"s3://{bucket}/cold",
            "TRACE_S3_ENDPOINT_URL": endpoint,
            "TRACE_SNS_ENDPOINT_URL": endpoint,
            "TRACE_SMOKE_SNS_TOPIC_ARN": topic,
        }
        code, lines, stderr = smoke(env)
        assert code == 0, (lines, stderr)
        assert set(statuses(lines).values()) == {"ok"}
        assert len(lines) == 5
        by_name = {line.split()[1]: line for line in lines}
        assert "on trace-smoke" in by_name["broker"]
        assert f"s3://{bucket}/cold/_smoke/" in by_name["object-store"]
        assert topic in by_name["sns"]
        # The probe message was received and deleted, the probe object deleted.
        assert sqs_depth(endpoint, smoke_queue["QueueUrl"]) == 0
        assert (
            boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)["KeyCount"]
            == 0
        )

        # On SQS the smoke queue is predefined (task roles cannot create queues): without it,
        # the broker check fails saying what to set.
        del env["TRACE_SQS_SMOKE_QUEUE_URL"]
        code, lines, _ = smoke(env, "--only", "broker")
        assert code == 1
        assert lines[0].startswith("FAIL broker")
        assert "TRACE_SQS_SMOKE_QUEUE_URL is not set" in lines[0]


def test_an_unknown_check_is_refused_naming_it(capsys):
    from trace_web.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["smoke", "--only", "broker,brokr"])
    assert exit_.value.code == 2
    assert "--only: unknown check(s) ['brokr']" in capsys.readouterr().err


def test_a_failure_reason_is_one_line_without_the_password_of_a_url():
    from trace_web.observability.smoke import failure_reason

    reason = failure_reason(ConnectionError("cannot reach\n redis://u:s3cret@10.0.0.1:6379/0"))
    assert reason == "ConnectionError: cannot reach redis://u:***@10.0.0.1:6379/0"
