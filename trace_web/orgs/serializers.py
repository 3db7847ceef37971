"""Shared pieces of every app's API documentation: the bodies of error responses (they come
from trace_web.errors.api_exception_handler and from DRF), and what OrgScopedView reads and
refuses (the X-Trace-Org header, 403)."""

from __future__ import annotations

import inspect

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer
from rest_framework import serializers


class ErrorOut(serializers.Serializer):
    """An error raised by a service (a TraceError), or one of DRF's own (authentication,
    permission, parsing, throttling), which carry only `detail`."""

    error = serializers.CharField(
        required=False,
        help_text="Code of a service error: invalid, not_found, forbidden, unauthenticated, "
        "conflict or stale_attempt. Absent on DRF's own errors.",
    )
    detail = serializers.CharField(help_text="What went wrong, for a human")
    errors = serializers.JSONField(
        required=False, help_text="Details of a service error, when it has them"
    )


class FieldErrorsOut(serializers.Serializer):
    """The request body failed the input serializer: one key per invalid field (or
    `non_field_errors`), each with a list of messages (an object for nested input)."""


class FieldErrorsOutSchema(OpenApiSerializerExtension):
    """FieldErrorsOut's keys are the request's field names: a map, not named properties."""

    target_class = FieldErrorsOut

    def map_serializer(self, auto_schema, direction) -> dict:
        messages = {"type": "array", "items": {"type": "string"}}
        return {
            "type": "object",
            "description": inspect.cleandoc(FieldErrorsOut.__doc__ or ""),
            "additionalProperties": {"oneOf": [messages, {"type": "object"}]},
        }


# 400 of a view that validates its body with a serializer before calling its service.
BadRequestOut = PolymorphicProxySerializer(
    component_name="BadRequest",
    serializers=[FieldErrorsOut, ErrorOut],
    resource_type_field_name=None,
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
