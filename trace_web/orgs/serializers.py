"""Shared pieces of every app's API documentation: the body of error responses (one shape, from
trace_web.errors.api_exception_handler), and what OrgScopedView reads and refuses (the
X-Trace-Org header, 403)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorOut(serializers.Serializer):
    """Every API error (trace_web.errors.api_exception_handler): a service's refusal or one of
    DRF's own (input serializer, parser, authentication, permission, throttling)."""

    error = serializers.CharField(
        help_text="A code: invalid, not_found, forbidden, unauthenticated, conflict, "
        "stale_attempt, or DRF's (not_authenticated, permission_denied, parse_error, "
        "unsupported_media_type, throttled, ...)"
    )
    detail = serializers.CharField(help_text="What went wrong, for a human")
    errors = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="For an invalid request: one `field.path: message` per problem",
    )


# Every OrgScopedView operation: the org it acts in, and its 403 (DRF answers a missing or
# bad credential with 403 too, as the first authenticator, SessionAuthentication, has no
# WWW-Authenticate challenge).
ORG_HEADER = OpenApiParameter(
    "X-Trace-Org",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Slug of the org to act in; needed when the caller belongs to several",
)
NOT_A_MEMBER = OpenApiResponse(ErrorOut, "Not signed in, or not a member of the org (X-Trace-Org)")
ROLE_TOO_LOW = OpenApiResponse(
    ErrorOut, "Not signed in, not a member of the org (X-Trace-Org), or the role is too low"
)


def document_throttling(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: every user operation (the org-scoped ones) is
    rate limited per user (TRACE_USER_API_RATE), so each documents its 429."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            names = {p.get("name") for p in operation.get("parameters", [])}
            if ORG_HEADER.name in names:
                operation["responses"].setdefault(
                    "429",
                    {
                        "description": "Too many requests: the per-user rate "
                        "(TRACE_USER_API_RATE) was exceeded; retry after the Retry-After header",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorOut"}
                            }
                        },
                    },
                )
    return result
