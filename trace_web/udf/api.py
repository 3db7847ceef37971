"""User-code API: upload, list and show bundles, set the org's signing keys and policy, and
the task-scoped `POST /v1/task/buffer-publish`. Views parse and call one service each."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from trace_operators.validation import Problems, validate
from trace_web.errors import ValidationFailed
from trace_web.orchestration.api import LEASE_LOST, TOKEN_REFUSED, CapabilityView
from trace_web.orgs.models import Role
from trace_web.orgs.scoping import OrgScopedView
from trace_web.orgs.serializers import NOT_A_MEMBER, ORG_HEADER, ROLE_TOO_LOW, ErrorOut
from trace_web.parsers import BodyTooLarge
from trace_web.udf import serializers as s
from trace_web.udf.buffer import buffer_publish
from trace_web.udf.models import SigningKey
from trace_web.udf.selectors import bundle_get, bundle_out, bundles_of
from trace_web.udf.services import bundle_upload, signing_policy_set


class ZipParser(BaseParser):
    """A bundle upload: the zip's bytes as the raw body, read up to the bundle size limit."""

    media_type = "application/zip"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        from django.conf import settings

        limit = settings.TRACE_UDF_BUNDLE_MAX_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(f"bundle over {limit} bytes (TRACE_UDF_BUNDLE_MAX_BYTES)")
        return raw


class BundleListApi(OrgScopedView):
    parser_classes = [ZipParser]

    @extend_schema(
        parameters=[ORG_HEADER], responses={200: s.BundleOut(many=True), 403: NOT_A_MEMBER}
    )
    def get(self, request: Request) -> Response:
        bundles = bundles_of(org_id=self.org.pk).order_by("name", "created_at")
        return Response([bundle_out(b) for b in bundles])

    @extend_schema(
        parameters=[ORG_HEADER],
        request={"application/zip": OpenApiTypes.BINARY},
        responses={
            201: OpenApiResponse(s.BundleOut, "Stored"),
            200: OpenApiResponse(s.BundleOut, "The same bytes were already stored"),
            400: OpenApiResponse(ErrorOut, "Refused: each problem names its field or zip member"),
            403: ROLE_TOO_LOW,
            409: OpenApiResponse(ErrorOut, "name@version exists with another content"),
            413: OpenApiResponse(ErrorOut, "Over TRACE_UDF_BUNDLE_MAX_BYTES"),
            415: OpenApiResponse(ErrorOut, "Not sent as application/zip"),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data
        if not isinstance(data, bytes) or not data:
            raise ParseError("the body must be the bundle's zip bytes (application/zip)")
        uploaded = bundle_upload(org=self.org, data=data, user=request.user)
        code = status.HTTP_201_CREATED if uploaded.created else status.HTTP_200_OK
        return Response(bundle_out(uploaded.bundle), status=code)


class BundleDetailApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER],
        responses={
            200: s.BundleOut,
            403: NOT_A_MEMBER,
            404: OpenApiResponse(ErrorOut, "No bundle of that sha256 or name@version in the org"),
        },
    )
    def get(self, request: Request, ref: str) -> Response:
        return Response(bundle_out(bundle_get(org_id=self.org.pk, ref=ref)))


class SigningPolicyApi(OrgScopedView):
    required_roles = {**OrgScopedView.required_roles, "PUT": Role.ADMIN}

    @extend_schema(parameters=[ORG_HEADER], responses={200: s.SigningPolicyOut, 403: NOT_A_MEMBER})
    def get(self, request: Request) -> Response:
        return Response(self._out())

    @extend_schema(
        parameters=[ORG_HEADER],
        request=s.SigningPolicyIn,
        responses={
            200: s.SigningPolicyOut,
            400: OpenApiResponse(ErrorOut, "A key that is not Ed25519, or a policy with no key"),
            403: ROLE_TOO_LOW,
        },
    )
    def put(self, request: Request) -> Response:
        body = s.SigningPolicyIn(data=request.data)
        body.is_valid(raise_exception=True)
        signing_policy_set(org=self.org, **body.validated_data)
        return Response(self._out())

    def _out(self) -> dict:
        from trace_web.udf.selectors import signed_manifests_required

        names = SigningKey.objects.filter(org=self.org).order_by("name")
        return {
            "keys": list(names.values_list("name", flat=True)),
            "require_signed": signed_manifests_required(org_id=self.org.pk),
        }


class TaskBufferPublishApi(CapabilityView):
    @extend_schema(
        request=s.BufferPublishBody,
        responses={
            200: OpenApiResponse(s.BufferPublishOut, "The batch is stored and its pointer kept"),
            400: OpenApiResponse(
                ErrorOut,
                "A malformed or oversized batch; nothing is stored (the udf runtime "
                "fails its attempt)",
            ),
            401: TOKEN_REFUSED,
            409: LEASE_LOST,
        },
    )
    def post(self, request: Request) -> Response:
        lease = self.lease(request)
        try:
            body = validate(s.BufferPublishBody, request.data)
        except Problems as exc:
            raise ValidationFailed.of(exc.errors) from None
        pointer = buffer_publish(lease=lease, rows=list(body.rows), output=body.output)
        return Response(pointer)
