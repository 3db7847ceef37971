"""Alerting: delivery retries, leases and the outbound safety rule, and the email and SMS
providers. See docs/alerts.md."""

from trace_web.settings.env import env_bool, env_float, env_int, env_str

# A delivery is tried at most this many times, backing off from BASE to MAX seconds (with
# jitter), then it is terminal (failed) and visible in admin and the API.
TRACE_DELIVERY_MAX_ATTEMPTS = env_int("TRACE_DELIVERY_MAX_ATTEMPTS", 12)
TRACE_DELIVERY_BACKOFF_BASE_SECONDS = env_float("TRACE_DELIVERY_BACKOFF_BASE_SECONDS", 5.0)
TRACE_DELIVERY_BACKOFF_MAX_SECONDS = env_float("TRACE_DELIVERY_BACKOFF_MAX_SECONDS", 1800.0)
# A send holds its delivery's lease this long; an expired lease returns it to pending.
TRACE_DELIVERY_LEASE_SECONDS = env_int("TRACE_DELIVERY_LEASE_SECONDS", 60)
TRACE_DELIVERY_TIMEOUT_SECONDS = env_float("TRACE_DELIVERY_TIMEOUT_SECONDS", 10.0)
# A CA bundle (PEM file) https receivers are verified against; unset: certifi's public roots.
TRACE_DELIVERY_CA_BUNDLE = env_str("TRACE_DELIVERY_CA_BUNDLE", "")
# Webhook and chat URLs must resolve to public addresses unless this is on (Lite, tests).
TRACE_DELIVERY_ALLOW_PRIVATE = env_bool("TRACE_DELIVERY_ALLOW_PRIVATE", False)
# The Redis holding the channels' rate-limit buckets; unset: the broker's (TRACE_BROKER_URL),
# which must then be Redis. Set it where the broker is not (SQS).
TRACE_DELIVERY_REDIS_URL = env_str("TRACE_DELIVERY_REDIS_URL", "")
# Email: Django's SMTP backend (EMAIL_HOST, EMAIL_PORT, ... from the environment).
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "alerts@trace.localhost")
# SMS through AWS SNS (boto3's usual credentials); an endpoint URL for moto or a VPC endpoint.
TRACE_SNS_ENDPOINT_URL = env_str("TRACE_SNS_ENDPOINT_URL", "")
TRACE_SNS_REGION = env_str("TRACE_SNS_REGION", "us-east-1")
# `trace smoke` publishes one message to this SNS topic when set (its `sns` check), through the
# SMS channel's endpoint and region; unset, that check is skipped.
TRACE_SMOKE_SNS_TOPIC_ARN = env_str("TRACE_SMOKE_SNS_TOPIC_ARN", "")
# A backtest (POST /v1/alerts/{id}/backtest) covers at most this many blocks.
TRACE_ALERT_BACKTEST_MAX_BLOCKS = env_int("TRACE_ALERT_BACKTEST_MAX_BLOCKS", 1_000_000)
