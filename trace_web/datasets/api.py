"""Dataset registry API (read-only): datasets of the caller's org with their versions."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trace_web.datasets.models import Dataset
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
        for dataset in self.scoped(Dataset).prefetch_related("versions").order_by("id"):
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
