"""Dataset registry API (read-only): datasets of the caller's org with their versions."""

from rest_framework.request import Request
from rest_framework.response import Response

from trace_web.datasets.models import Dataset
from trace_web.orgs.scoping import OrgScopedView


class DatasetListApi(OrgScopedView):
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
