"""Secrets and security settings. Secrets have no defaults: a missing one fails at start-up."""

from trace_web.settings.env import env_bool, env_str

SECRET_KEY = env_str("TRACE_SECRET_KEY")
# Signs the per-attempt capability tokens (JWT, HS256) held by task runtimes.
TRACE_TASK_TOKEN_SECRET = env_str("TRACE_TASK_TOKEN_SECRET")
# Extra lifetime of a capability token past the task's timeout.
TRACE_TASK_TOKEN_GRACE_SECONDS = 300

SESSION_COOKIE_SECURE = env_bool("TRACE_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
