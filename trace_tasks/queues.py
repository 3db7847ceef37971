"""The one enum of queues, one Celery queue and one worker pool each, and the rule that picks a
job's queue: its runtime's, except that long-running sources get the `stream` pool."""

import json
from enum import StrEnum
from urllib.parse import urlsplit


class Queue(StrEnum):
    PLATFORM = "platform"  # trusted operators, batch work
    STREAM = "stream"  # trusted long-running sources (always_on), one pool slot per source
    UDF = "udf"  # untrusted user code, sandboxed
    DELIVERY = "delivery"  # outbound sends; the only pool allowed to reach the internet
    DISPATCHER = "dispatcher"  # control-plane loops and routing


def queue_for(*, runtime: str, source_kind: str) -> Queue:
    """The queue a job's wake-ups go to. An always_on source runs for ever: on the `platform`
    pool it would hold one of the few slots batch work needs, so trusted sources get `stream`,
    a pool sized for many long-lived tasks. Untrusted (`udf`) sources stay on `udf`, which
    isolates user code; the stream pool runs trusted code only."""
    if source_kind == "always_on" and runtime == Queue.PLATFORM:
        return Queue.STREAM
    return Queue(runtime)


def sqs_queue_urls(raw: str) -> dict[str, str]:
    """`TRACE_SQS_QUEUE_URLS` (a JSON object of queue name -> SQS queue URL) checked: every
    queue named, nothing else, each URL https (or http on loopback: a local SQS such as moto).
    A missing queue would only fail when its first wake-up is sent; this fails at start-up
    instead."""
    try:
        urls = json.loads(raw or "{}")
    except ValueError as exc:
        raise ValueError(f"TRACE_SQS_QUEUE_URLS must be a JSON object: {exc}") from None
    if not isinstance(urls, dict):
        raise ValueError("TRACE_SQS_QUEUE_URLS must be a JSON object of queue name -> URL")
    names = {q.value for q in Queue}
    missing, unknown = sorted(names - set(urls)), sorted(set(urls) - names)
    if missing or unknown:
        raise ValueError(f"TRACE_SQS_QUEUE_URLS: missing {missing}, unknown {unknown}")
    bad = sorted(k for k, v in urls.items() if not _is_queue_url(v))
    if bad:
        raise ValueError(f"TRACE_SQS_QUEUE_URLS: not an https URL for {bad}")
    return urls


def _is_queue_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "https" or (parts.scheme == "http" and loopback)
