"""The TraceError family: one application error type whose subclasses map to HTTP codes.

Services raise these; the DRF exception handler and management commands translate them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError
from django.http import Http404, HttpRequest, JsonResponse
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

    @classmethod
    def one(cls, path: str, message: str) -> ValidationFailed:
        """One problem of one field: `detail` and the single `errors` line say the same."""
        line = f"{path}: {message}" if path else message
        return cls(line, details=[line])

    @classmethod
    def of(cls, errors: list[str]) -> ValidationFailed:
        """Every problem of a request, each as `field.path: message`."""
        return cls("; ".join(errors), details=list(errors))


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
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"error": "too_large", "detail": "request body too large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response(
            {"error": "invalid", "detail": "the request was refused as malformed"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if _is_unreachable(exc):
        # Postgres restarting, a data DB down: the request may succeed shortly.
        return Response(
            {"error": "unavailable", "detail": "a database is unreachable; retry shortly"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if _is_data_error(exc):
        # Input checks should have caught it; never echo the statement or its parameters.
        return Response(
            {"error": "invalid", "detail": "a value is out of range or cannot be stored"},
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


def _is_unreachable(exc: Exception) -> bool:
    from django.db import InterfaceError, OperationalError
    from sqlalchemy.exc import OperationalError as SqlAlchemyOperationalError

    return isinstance(exc, OperationalError | InterfaceError | SqlAlchemyOperationalError)


def _is_data_error(exc: Exception) -> bool:
    """A value the database refused (out of range, NUL in text), from Django's ORM or from
    SQLAlchemy (the data DB)."""
    if isinstance(exc, DataError):
        return True
    from sqlalchemy.exc import DataError as SqlAlchemyDataError

    return isinstance(exc, SqlAlchemyDataError)


# --- Django-level errors (no route, a crash before DRF, a body Django refused) -------------------
# Under the API prefix they answer in the same JSON shape; elsewhere (admin) Django's pages.
API_PREFIX = "/v1/"


def _json_or_default(request: HttpRequest, default, status_code: int, code: str, detail: str):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": code, "detail": detail}, status=status_code)
    return default()


def bad_request(request: HttpRequest, exception: Exception | None = None, **kwargs: Any):
    from django.views import defaults

    too_big = isinstance(exception, RequestDataTooBig)
    return _json_or_default(
        request,
        lambda: defaults.bad_request(request, exception),
        413 if too_big else 400,
        "too_large" if too_big else "invalid",
        "request body too large" if too_big else "the request was refused as malformed",
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None, **kwargs: Any):
    from django.views import defaults

    return _json_or_default(
        request,
        lambda: defaults.permission_denied(request, exception),
        403,
        "permission_denied",
        "you may not do this",
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None, **kwargs: Any):
    from django.views import defaults

    return _json_or_default(
        request,
        lambda: defaults.page_not_found(request, exception),
        404,
        "not_found",
        f"no API endpoint at {request.path} (see /v1/schema/docs/)",
    )


def server_error(request: HttpRequest, **kwargs: Any):
    from django.views import defaults

    return _json_or_default(
        request,
        lambda: defaults.server_error(request),
        500,
        "internal",
        "internal error; it was logged",
    )


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
