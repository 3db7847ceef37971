"""The one strict JSON parser every endpoint uses (DRF's default, and the token and webhook
views): the body is capped in size before it is read whole, and refused up front when it nests
too deeply or holds what Postgres cannot store (NUL, unpaired surrogates, non-finite numbers),
so such a body is a 400 (or 413) naming the problem, never a 500 from the parser or the
database later."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

from trace_operators.validation import json_problem


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "request body too large"


def body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = body_limit()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json_loads_strict(raw.decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError is one
            raise ParseError(f"JSON parse error - {exc}") from None


def json_loads_strict(text: str) -> Any:
    """JSON text as a value Postgres can store, or ValueError saying why not (also for the
    commands that take JSON arguments)."""
    if not text.strip():
        raise ValueError("the body is empty")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if problem := json_problem(data):
        path, message = problem
        raise ValueError(f"at {path}: {message}" if path else message)
    return data


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not a JSON number")
