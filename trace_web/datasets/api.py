"""Dataset registry API (read-only): the datasets of the caller's org that their role may read,
with their versions, one dataset in detail (schema, versions, hot and cold extent), and the
org's integrity checks of cold data."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trace_web.datasets.selectors import (
    dataset_by_name,
    dataset_detail,
    datasets_readable,
    integrity_checks_filter,
)
from trace_web.datasets.serializers import (
    DatasetDetailOut,
    DatasetOut,
    IntegrityCheckListQuery,
    IntegrityCheckOut,
)
from trace_web.orchestration.api import NEXT_PAGE_LINK
from trace_web.orgs.scoping import OrgScopedView
from trace_web.orgs.serializers import NOT_A_MEMBER, ORG_HEADER, ErrorOut


class DatasetListApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER],
        responses={
            200: DatasetOut(many=True),
            403: NOT_A_MEMBER,
        },
    )
    def get(self, request: Request) -> Response:
        rows = []
        readable = datasets_readable(org=self.org, role=self.membership.role)
        for dataset in readable.prefetch_related("versions").order_by("id"):
            latest = max((v.generation for v in dataset.versions.all()), default=None)
            rows.append(
                {
                    "name": dataset.display_name,
                    "published": dataset.published_name is not None,
                    "dag": dataset.dag_name,
                    "job": dataset.job_name,
                    "output": dataset.output_index,
                    "storage_kind": dataset.storage_kind,
                    "latest_generation": latest,
                }
            )
        return Response(rows)


class DatasetDetailApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER],
        responses={
            200: DatasetDetailOut,
            403: NOT_A_MEMBER,
            404: OpenApiResponse(ErrorOut, "No dataset of that name that the caller may read"),
            503: OpenApiResponse(ErrorOut, "The data DB is unreachable; retry after Retry-After"),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        dataset = dataset_by_name(org=self.org, role=self.membership.role, name=name)
        return Response(dataset_detail(dataset))


class IntegrityCheckListApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER, IntegrityCheckListQuery, NEXT_PAGE_LINK],
        responses={
            200: IntegrityCheckOut(many=True),
            400: OpenApiResponse(ErrorOut, "A bad query parameter"),
            403: NOT_A_MEMBER,
        },
    )
    def get(self, request: Request) -> Response:
        query = IntegrityCheckListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        given = dict(query.validated_data)
        limit = given.pop("limit")
        checks = integrity_checks_filter(
            org=self.org,
            chain_id=given.get("chain_id"),
            status=given.get("status"),
            dag=given.get("dag"),
            job=given.get("job"),
            overlaps_start=given.get("range_start"),
            overlaps_end=given.get("range_end"),
            before_id=given.get("before_id"),
        )
        page = list(checks[:limit])
        response = Response(IntegrityCheckOut(page, many=True).data)
        if len(page) == limit:  # there may be more: link the next page
            params = request.query_params.copy()
            params["before_id"] = str(page[-1].pk)
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
            response["Link"] = f'<{next_url}>; rel="next"'
        return response
