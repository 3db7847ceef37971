"""Celery broker and delivery semantics (the app itself lives in trace_tasks.celery_app)."""

from trace_web.settings.env import env_str

TRACE_BROKER_URL = env_str("TRACE_BROKER_URL", "redis://127.0.0.1:6379/0")
