"""AWS for tests, only through moto's server over HTTP on loopback: throwaway credentials, the
SQS queues Terraform would make (one per Celery queue), and the settings that point the Celery
broker at them."""

from __future__ import annotations

import json
import uuid

import pytest

from trace_tasks.queues import Queue

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def aws_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throwaway credentials and region; no shared AWS config or profile read."""
    for name, value in {
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def sqs_queues_create(endpoint: str) -> dict[str, str]:
    """A standard queue per Celery queue under a fresh name prefix (moto's state outlives a
    server); returns TRACE_SQS_QUEUE_URLS' map."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    prefix = f"trace-{uuid.uuid4().hex[:8]}"
    return {q.value: sqs.create_queue(QueueName=f"{prefix}-{q.value}")["QueueUrl"] for q in Queue}


def sqs_broker_env(endpoint: str, queue_urls: dict[str, str]) -> dict[str, str]:
    """The environment of a process whose Celery broker is that SQS: the endpoint's host and
    port in the URL (kombu builds the endpoint from them), credentials in the URL too."""
    host = endpoint.removeprefix("http://")
    return {
        **CREDENTIALS,
        "TRACE_BROKER_URL": f"sqs://{CREDENTIALS['AWS_ACCESS_KEY_ID']}:"
        f"{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}@{host}",
        "TRACE_SQS_REGION": REGION,
        "TRACE_SQS_QUEUE_URLS": json.dumps(queue_urls),
    }


def sqs_depth(endpoint: str, queue_url: str) -> int:
    """Messages in a queue, visible or received but not yet deleted (acknowledged)."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    answer = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(answer[n]) for n in names)
