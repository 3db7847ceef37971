"""The TraceError family: one application error type whose subclasses map to HTTP codes.

Services raise these; the DRF exception handler and management commands translate them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler


class TraceError(Exception):
    http_status = status.HTTP_400_BAD_REQUEST
    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailed(TraceError):
    code = "invalid"


class NotFound(TraceError):
    http_status = status.HTTP_404_NOT_FOUND
    code = "not_found"


class PermissionDenied(TraceError):
    http_status = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class Unauthenticated(TraceError):
    http_status = status.HTTP_401_UNAUTHORIZED
    code = "unauthenticated"


class Conflict(TraceError):
    http_status = status.HTTP_409_CONFLICT
    code = "conflict"


class StaleAttempt(Conflict):
    """A mutation named a (task, attempt, lease_token) that is no longer current."""

    code = "stale_attempt"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error has one shape: `{"error": code, "detail": text}`, plus `errors` (a list
    of `field.path: message`) when the request was invalid — whether a service refused it (a
    TraceError) or DRF did (input serializer, parser, authentication, throttling)."""
    if isinstance(exc, TraceError):
        body: dict[str, Any] = {"error": exc.code, "detail": exc.message}
        if exc.details is not None:
            body["errors"] = exc.details
        return Response(body, status=exc.http_status)
    if isinstance(exc, DataError):  # a value Postgres refuses (NUL in text, out of range)
        return Response(
            {"error": "invalid", "detail": f"the database refused a value: {exc}".strip()},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = list(_field_messages(exc.detail))
        response.data = {"error": "invalid", "detail": "; ".join(errors), "errors": errors}
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        response.data = {"error": _drf_code(exc), "detail": str(detail)}
    return response


def _field_messages(detail: Any, path: str = "") -> Iterator[str]:
    """DRF's nested error detail as `field.path: message` lines (list items as `[i]`)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):
                yield from _field_messages(value, f"{path}[{key}]")
            elif key == api_settings.NON_FIELD_ERRORS_KEY:
                yield from _field_messages(value, path)
            else:
                yield from _field_messages(value, f"{path}.{key}" if path else str(key))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            nested = isinstance(value, dict | list)
            yield from _field_messages(value, f"{path}[{index}]" if nested else path)
    else:
        yield f"{path}: {detail}" if path else str(detail)


def _drf_code(exc: Exception) -> str:
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        return codes if isinstance(codes, str) else exc.default_code
    if isinstance(exc, Http404):
        return "not_found"
    if isinstance(exc, DjangoPermissionDenied):
        return "permission_denied"
    return "error"
