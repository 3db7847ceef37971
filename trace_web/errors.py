"""The TraceError family: one application error type whose subclasses map to HTTP codes.

Services raise these; the DRF exception handler and management commands translate them.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
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
    if isinstance(exc, TraceError):
        body: dict[str, Any] = {"error": exc.code, "detail": exc.message}
        if exc.details is not None:
            body["errors"] = exc.details
        return Response(body, status=exc.http_status)
    return exception_handler(exc, context)
