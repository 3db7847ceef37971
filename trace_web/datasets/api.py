"""Dataset registry API (read-only): the datasets of the caller's org that their role may read,
with their versions, and one dataset in detail (schema, versions, hot and cold extent)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trace_web.datasets.selectors import dataset_by_name, dataset_detail, datasets_readable
from trace_web.datasets.serializers import DatasetDetailOut, DatasetOut
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
