"""With an `sqs://` broker the Celery app uses the SQS queues Terraform made, one per queue,
by URL (TRACE_SQS_QUEUE_URLS), and a missing or stray queue fails at start-up."""

from __future__ import annotations

import json

import pytest

from trace_tasks.queues import Queue, sqs_queue_urls

URLS = {q.value: f"https://sqs.eu-west-1.amazonaws.com/123456789012/trace-{q.value}" for q in Queue}


def test_every_queue_is_predefined_by_url(settings):
    from trace_tasks import celery_app

    settings.TRACE_BROKER_URL = "sqs://"
    settings.TRACE_SQS_REGION = "eu-west-1"
    settings.TRACE_SQS_QUEUE_URLS = json.dumps(URLS)
    options = celery_app.broker_transport_options()
    assert options["region"] == "eu-west-1"
    assert options["predefined_queues"] == {name: {"url": url} for name, url in URLS.items()}


def test_a_redis_broker_has_no_sqs_options(settings):
    from trace_tasks import celery_app

    settings.TRACE_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert "predefined_queues" not in celery_app.broker_transport_options()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "missing"),
        ("[]", "JSON object"),
        ("{not json", "JSON object"),
        (json.dumps({k: v for k, v in URLS.items() if k != "udf"}), "missing ['udf']"),
        (json.dumps({**URLS, "fifo": URLS["udf"]}), "unknown ['fifo']"),
        (json.dumps({**URLS, "udf": "http://sqs/udf"}), "not an https URL for ['udf']"),
        (json.dumps({**URLS, "udf": 7}), "not an https URL for ['udf']"),
    ],
)
def test_a_wrong_queue_map_fails_naming_the_problem(raw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sqs_queue_urls(raw)


def test_plain_http_is_accepted_on_loopback_only():
    local = {q.value: f"http://127.0.0.1:4566/000000000000/trace-{q.value}" for q in Queue}
    assert sqs_queue_urls(json.dumps(local)) == local


def test_a_wake_up_publish_tries_once_with_the_publish_timeout_on_sqs_too(settings):
    from trace_tasks.publisher import publish_transport_options

    settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS = 1.5
    options = publish_transport_options()
    assert options["client-config"] == {
        "connect_timeout": 1.5,
        "read_timeout": 1.5,
        "retries": {"total_max_attempts": 1},
    }
    assert (options["max_retries"], options["socket_timeout"]) == (0, 1.5)
