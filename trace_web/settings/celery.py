"""Celery broker and delivery semantics (the app itself lives in trace_tasks.celery_app)."""

from pathlib import Path

from trace_web.settings.base import TRACE_HOME
from trace_web.settings.env import env_float, env_str

TRACE_BROKER_URL = env_str("TRACE_BROKER_URL", "redis://127.0.0.1:6379/0")
# Redis only: every key the broker uses (queues, unacked, bindings, pub/sub channels) starts with
# this (kombu's global_keyprefix), so deployments or test runs can share one Redis db.
TRACE_BROKER_KEY_PREFIX = env_str("TRACE_BROKER_KEY_PREFIX", "")
# SQS only (TRACE_BROKER_URL=sqs://, credentials from boto3's chain: the ECS task role): the
# region, and the URL of each queue's SQS queue as a JSON object {"platform": "https://...",
# ...}, so kombu uses the queues Terraform made (terraform/) and never lists or creates any.
TRACE_SQS_REGION = env_str("TRACE_SQS_REGION", "us-east-1")
TRACE_SQS_QUEUE_URLS = env_str("TRACE_SQS_QUEUE_URLS", "")
# SQS only: the queue `trace smoke` sends to and receives from (no worker consumes it; made by
# terraform/modules/queues as <name>-smoke). Redis needs none: smoke uses a temporary queue.
TRACE_SQS_SMOKE_QUEUE_URL = env_str("TRACE_SQS_SMOKE_QUEUE_URL", "")
# Publishing a wake-up gives up after this (connect and socket timeout, one try): callers do
# not wait on a broker that is down, the outbox keeps what was not published.
TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS = env_float("TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS", 2.0)
# After a failed publish, nothing is published from that process for this long (the breaker).
TRACE_BROKER_BREAKER_SECONDS = env_float("TRACE_BROKER_BREAKER_SECONDS", 5.0)
# Each worker touches <dir>/<node name>.alive from its consumer's event loop while it
# consumes; `trace worker-alive` fails when that file is older than its --max-age.
TRACE_WORKER_ALIVE_DIR = Path(env_str("TRACE_WORKER_ALIVE_DIR", str(TRACE_HOME / "alive")))
