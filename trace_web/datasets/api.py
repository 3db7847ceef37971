"""Dataset registry API (read-only): the datasets of the caller's org that their role may read,
with their versions."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trace_web.datasets.selectors import datasets_readable
from trace_web.datasets.serializers import DatasetOut
from trace_web.orgs.scoping import OrgScopedView
from trace_web.orgs.serializers import NOT_A_MEMBER, ORG_HEADER


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
