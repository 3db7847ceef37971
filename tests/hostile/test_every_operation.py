"""Every operation of the OpenAPI schema, against a corpus of hostile bodies, path segments,
query values and credentials: no answer is a 5xx, every refusal is in the JSON error shape,
and a refused request writes nothing. The operations are read from the schema, so a new
endpoint is swept the day it is added."""

from __future__ import annotations

import json
import re
from typing import Any

import jwt
import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tests.hostile.conftest import World, assert_error_shape, row_counts

METHODS = ("get", "post", "put", "patch", "delete")
DEEP = 5_000

# Whole bodies, sent raw as JSON.
BODIES: dict[str, bytes] = {
    "nested-lists": b"[" * 100_000 + b"]" * 100_000,
    "nested-objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "nul": b'{"x": "\\u0000", "yaml": "\\u0000", "error": "\\u0000"}',
    "surrogate": b'{"x": "\\ud800", "yaml": "name: \\udfff", "error": "\\ud800"}',
    "huge-integer": b'{"version": 1' + b"0" * 40 + b', "limit": 1' + b"0" * 40 + b"}",
    "nan": b'{"x": NaN, "version": Infinity}',
    "truncated": b'{"x": ',
    "a-list": b"[1, 2, 3]",
    "a-string": b'"text"',
    "a-number": b"12345678901234567890123456789",
    "null": b"null",
    "not-utf8": b'{"x": "\xff\xfe"}',
    "unknown-fields": b'{"colour": "red", "__proto__": {}, "constructor": 1}',
    "empty-object": b"{}",
    "whitespace": b"   ",
}
# Values put in every documented field of a request body, one field at a time.
FIELD_VALUES: dict[str, Any] = {
    "null": None,
    "true": True,
    "huge": 10**40,
    "negative-huge": -(10**40),
    "float": 1.5,
    "long-string": "x" * 200_000,
    "nul-string": "a\x00b",
    "list": [1, [2, [3]]],
    "object": {"a": {"b": {"c": 1}}},
    "empty-string": "",
}
PATH_VALUES = [
    "99999999999999999999999",
    "9223372036854775808",
    "-1",
    "0",
    "%00",
    "a" * 300,
    "%F0%9F%98%80",
    "..",
    "1e3",
    "%2e%2e%2fetc",
]
QUERY_VALUES = ["99999999999999999999999", "-1", "%00", "x" * 5000, "ü", "true", "[]"]


def _schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


SCHEMA = None


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    global SCHEMA
    if SCHEMA is None:
        SCHEMA = _schema()
    return [
        (method, path, item[method])
        for path, item in SCHEMA["paths"].items()
        for method in METHODS
        if method in item
    ]


def _ids(ops) -> list[str]:
    return [f"{m.upper()} {p}" for m, p, _ in ops]


OPERATIONS = operations()


def concrete_path(path: str, world: World) -> str:
    """The path with each parameter set to something that exists in the world."""
    values = {
        "task_id": str(world.queued_task_id),
        "chain_id": "31337",
        "result_id": "00000000-0000-4000-8000-000000000000",  # well-formed, not there
        "org": world.org_slug,
        "job": "hook" if path.startswith("/v1/hooks/") else "extract",
        "name": (
            "history"
            if path.startswith("/v1/chain-syncs/")
            else "sources"
            if path.startswith("/v1/hooks/")
            else "chain"
        ),
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def client_for(path: str, world: World) -> APIClient:
    if path.startswith("/v1/task/"):
        return world.runtime()
    if path.startswith("/v1/hooks/"):
        client = APIClient()
        client.credentials(HTTP_X_TRACE_WEBHOOK_SECRET=world.webhook_secret)
        return client
    if path == "/v1/auth/token":
        return APIClient()
    return world.admin


def send(client: APIClient, method: str, path: str, body: bytes | None, **extra) -> Any:
    if body is None:
        return getattr(client, method)(path, **extra)
    return client.generic(method.upper(), path, body, content_type="application/json", **extra)


def check(response, context: str, before: dict[str, int]) -> None:
    assert_error_shape(response, context)
    if response.status_code >= 400:
        assert row_counts() == before, f"{context}: a refused request wrote rows"


def body_fields(operation: dict[str, Any]) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {})
    node = content.get("application/json", {}).get("schema", {})
    while "$ref" in node:
        node = SCHEMA["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return sorted(node.get("properties", {}))


WRITES = [op for op in OPERATIONS if op[0] != "get"]


@pytest.mark.parametrize(("method", "path", "operation"), WRITES, ids=_ids(WRITES))
def test_hostile_bodies(world, method, path, operation):
    url = concrete_path(path, world)
    for name, body in BODIES.items():
        before = row_counts()
        response = send(client_for(path, world), method, url, body)
        check(response, f"{method} {url} body={name}", before)
        takes_body = "requestBody" in operation and "hooks" not in path  # a webhook takes any
        if takes_body and name not in ("empty-object", "whitespace", "null"):
            assert response.status_code >= 400, (name, url, response.status_code)


@pytest.mark.parametrize(("method", "path", "operation"), WRITES, ids=_ids(WRITES))
def test_hostile_values_in_every_documented_field(world, method, path, operation):
    url = concrete_path(path, world)
    for field in [*body_fields(operation), "unknown_field"]:
        for name, value in FIELD_VALUES.items():
            before = row_counts()
            body = json.dumps({field: value}).encode()
            response = send(client_for(path, world), method, url, body)
            check(response, f"{method} {url} {field}={name}", before)


PARAMETRIZED = [op for op in OPERATIONS if "{" in op[1]]


@pytest.mark.parametrize(("method", "path", "operation"), PARAMETRIZED, ids=_ids(PARAMETRIZED))
def test_hostile_path_segments(world, method, path, operation):
    params = re.findall(r"\{(\w+)\}", path)
    base = concrete_path(path, world)
    for param in params:
        for value in PATH_VALUES:
            good = concrete_path(path, world).split("/")
            template = path.split("/")
            url = "/".join(
                value if segment == f"{{{param}}}" else good[i]
                for i, segment in enumerate(template)
            )
            before = row_counts()
            response = send(
                client_for(path, world), method, url, b"{}" if method != "get" else None
            )
            check(response, f"{method} {url} (from {base})", before)
            assert response.status_code in (400, 401, 403, 404, 405), (url, response.status_code)


QUERIED = [
    (m, p, op)
    for m, p, op in OPERATIONS
    if any(q.get("in") == "query" for q in op.get("parameters", []))
]


@pytest.mark.parametrize(("method", "path", "operation"), QUERIED, ids=_ids(QUERIED))
def test_hostile_query_values(world, method, path, operation):
    url = concrete_path(path, world)
    names = [q["name"] for q in operation["parameters"] if q.get("in") == "query"]
    for param in [*names, "unknown_param"]:
        for value in QUERY_VALUES:
            before = row_counts()
            response = getattr(client_for(path, world), method)(url, {param: value})
            check(response, f"{method} {url}?{param}={value[:20]}", before)


TOKEN_OPS = [op for op in OPERATIONS if op[1].startswith("/v1/task/")]


def forged_tokens(world: World) -> dict[str, str]:
    lease = world.claimed.lease
    good = jwt.decode(
        world.claimed.capability_token,
        settings.TRACE_TASK_TOKEN_SECRET,
        algorithms=["HS256"],
        audience="trace.task",
    )
    sign = lambda claims, key=settings.TRACE_TASK_TOKEN_SECRET: jwt.encode(claims, key, "HS256")  # noqa: E731
    return {
        "empty": "",
        "garbage": "not-a-token",
        "alg-none": jwt.encode(good, None, algorithm="none"),
        "wrong-key": sign(good, "another-key-that-is-long-enough-for-hs256!"),
        "expired": sign({**good, "exp": 1}),
        "wrong-audience": sign({**good, "aud": "trace.user"}),
        "no-task": sign({k: v for k, v in good.items() if k != "task_id"}),
        "other-task": sign({**good, "task_id": lease.task_id + 1000}),
        "sub-mismatch": sign({**good, "sub": "task:1"}),
        "nul-lease": sign({**good, "lease_token": "\x00" * 36}),
        "huge-task": sign({**good, "task_id": 10**30, "sub": f"task:{10**30}"}),
        "deep-claims": sign({**good, "datasets": json.loads("[" * 500 + "]" * 500)}),
    }


@pytest.mark.parametrize(("method", "path", "operation"), TOKEN_OPS, ids=_ids(TOKEN_OPS))
def test_forged_and_malformed_capability_tokens_are_401(world, method, path, operation):
    for name, token in forged_tokens(world).items():
        before = row_counts()
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        response = send(client, method, concrete_path(path, world), b"{}")
        check(response, f"{path} token={name}", before)
        # Every one, "other-task" included (its sub still names the real task), is refused as
        # a credential, before any lease is looked at.
        assert response.status_code == 401, (name, response.status_code, response.json())
