"""schemathesis fuzzes every operation of our OpenAPI schema in-process (WSGI), positive and
negative cases, with valid credentials so requests get past authentication. No answer may be
a 5xx, and every refusal is in the JSON error shape."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from trace_web.wsgi import application

EXAMPLES_PER_OPERATION = 15


@schemathesis.check
def json_error_shape(ctx, response, case) -> bool | None:
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), f"{response.status_code} not JSON"
        body = response.json()
        assert isinstance(body, dict) and {"error", "detail"} <= set(body), body
    return None


@schemathesis.serializer("application/zip")
def zip_body(ctx, value) -> bytes:
    """A bundle upload's body is raw bytes (the fuzzer's binary value, whatever it made)."""
    if isinstance(value, bytes):
        return value
    return (
        value.encode("utf-8", "surrogatepass") if isinstance(value, str) else repr(value).encode()
    )


def _credentials(path: str, world) -> dict[str, str]:
    if path.startswith("/v1/task/"):
        return {"Authorization": f"Bearer {world.claimed.capability_token}"}
    if path.startswith("/v1/hooks/"):
        return {"X-Trace-Webhook-Secret": world.webhook_secret}
    token, _ = Token.objects.get_or_create(user=world.admin.user)
    return {"Authorization": f"Token {token.key}"}


@pytest.fixture
def in_test_transaction():
    """Requests go through the real WSGI handler, which closes database connections when a
    request ends; Django's own test client keeps them open so the test's transaction (and
    its data) survives each request. Do the same."""
    from django.core import signals
    from django.db import close_old_connections

    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_reach_a_server_error(world, in_test_transaction, mode):
    schema = schemathesis.openapi.from_wsgi("/v1/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/task/events", "POST /v1/auth/token"}
    nothing_to_negate = []
    for operation in operations:
        try:
            _fuzz(operation, mode, _credentials(operation.path, world))
        except Unsatisfiable:  # negative mode: no parameter or body that could be made invalid
            nothing_to_negate.append(operation)
    assert mode == GenerationMode.NEGATIVE or not nothing_to_negate
    for operation in nothing_to_negate:
        definition = operation.definition.raw
        any_string = [
            p.get("schema") == {"type": "string"} for p in definition.get("parameters", [])
        ]
        # Any bytes are a well-formed bundle upload (the service refuses them): nothing to negate.
        body = definition.get("requestBody", {}).get("content", {})
        any_bytes = all(m.get("schema", {}).get("format") == "binary" for m in body.values())
        assert (not body or any_bytes) and all(any_string), operation.label


def _fuzz(operation, mode: GenerationMode, credentials: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        response = case.call(headers={**(case.headers or {}), **credentials})
        case.validate_response(response, checks=[not_a_server_error, json_error_shape])

    fuzz()
