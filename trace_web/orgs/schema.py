"""OpenAPI documentation for views Trace does not write itself: the token endpoint (DRF's
`obtain_auth_token`, or a subclass of it) documented with its request, its token and its 400,
without touching the view."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers

from trace_web.orgs.serializers import ErrorOut


class TokenIn(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField()


class TokenOut(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`")


class DocumentedAuthToken(OpenApiViewExtension):
    """Applies to DRF's ObtainAuthToken and every subclass (a stricter parser, say), above
    drf-spectacular's own extension for it, which documents no error."""

    target_class = "rest_framework.authtoken.views.ObtainAuthToken"
    match_subclasses = True
    priority = 1

    def view_replacement(self):
        documented = extend_schema(
            operation_id="auth_token_create",
            description="Exchange a username and password for the user's API token (the "
            "same token on every call). No credential needed.",
            request=TokenIn,
            responses={
                200: TokenOut,
                400: OpenApiResponse(
                    ErrorOut,
                    "Wrong username or password, a missing or empty field, or an unparsable "
                    "body (`invalid` or `parse_error`, with `errors` per field)",
                ),
            },
            auth=[],
        )
        return extend_schema_view(post=documented)(type("AuthToken", (self.target,), {}))
