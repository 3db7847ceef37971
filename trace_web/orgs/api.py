"""Sign-in for API clients: a username and password for the user's API token. DRF's own view,
with the project's strict parsers (its own JSONParser would bypass the nesting and size
limits) and a rate limit per client address, since it is open to anyone."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.throttling import AnonRateThrottle

from trace_web.orgs.serializers import ErrorOut
from trace_web.parsers import StrictJSONParser


class SignInThrottle(AnonRateThrottle):
    scope = "sign_in"


class AuthTokenIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1000, style={"input_type": "password"})


class AuthTokenOut(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`")


class AuthTokenApi(ObtainAuthToken):
    parser_classes = (StrictJSONParser, FormParser, MultiPartParser)
    throttle_classes = (SignInThrottle,)

    @extend_schema(
        request=AuthTokenIn,
        responses={
            200: AuthTokenOut,
            400: OpenApiResponse(
                ErrorOut,
                "Missing or malformed fields, or a wrong username or password (one answer for "
                "both, so it does not tell which usernames exist)",
            ),
            413: OpenApiResponse(ErrorOut, "Body too large"),
            415: OpenApiResponse(ErrorOut, "Unsupported content type"),
            429: OpenApiResponse(
                ErrorOut, "Too many sign-in attempts from this address (TRACE_SIGN_IN_RATE)"
            ),
        },
        auth=[],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)
