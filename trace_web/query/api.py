"""The query API: `POST /v1/query` (a person: the org's datasets their role may read) and
`POST /v1/task/query` (a task: exactly the dataset versions its capability token pins), and
the download of a result that was too large to answer inline, by whoever ran it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trace_chain.db import query_reader_dsn
from trace_web.orchestration.api import CapabilityView
from trace_web.orgs.scoping import OrgScopedView
from trace_web.orgs.serializers import NOT_A_MEMBER, ORG_HEADER, ErrorOut
from trace_web.query import results
from trace_web.query.models import QueryResult
from trace_web.query.selectors import query_catalog, task_catalog
from trace_web.query.serializers import QueryIn, QueryOut
from trace_web.query.services import (
    QueryOutcome,
    query_result_for,
    query_result_open,
    query_run,
)

REFUSED = OpenApiResponse(
    ErrorOut,
    "query_refused (the gate said why) or query_failed (it ran and failed: a wrong "
    "column, its time or memory limit)",
)
UNAVAILABLE = OpenApiResponse(ErrorOut, "The data DB or the sandbox is unavailable; retry")
ANSWERS = {
    200: OpenApiResponse(
        QueryOut, "Rows inline (JSON); with format csv or arrow, the rows in that format"
    ),
    400: REFUSED,
    503: UNAVAILABLE,
}


def export_format(data: dict) -> str | None:
    """Past the inline caps a result is exported, unless the caller capped the rows."""
    if "max_rows" in data:
        return None
    return data.get("export_format") or ("csv" if data["format"] == "csv" else "parquet")


def respond(outcome: QueryOutcome, fmt: str, download: str) -> Response | HttpResponse:
    table = outcome.table
    if fmt == "json" or outcome.export is not None:
        body = {
            "columns": results.columns_of(table),
            "rows": results.json_rows(table),
            "row_count": table.num_rows,
            "truncated": outcome.truncated,
            "seconds": round(outcome.seconds, 3),
            "relations": sorted(outcome.relations),
            "sql_sha256": outcome.sql_sha256,
        }
        if outcome.export is None:
            return Response(body)
        export = outcome.export
        url = f"{download}/{export.pk}"
        body["row_count"] = export.row_count
        body["export"] = {
            "id": str(export.pk),
            "format": export.format,
            "url": url,
            "row_count": export.row_count,
            "bytes": export.bytes,
            "truncated": export.truncated,
            "expires_at": export.expires_at,
        }
        return Response(body, headers={"Location": url})
    body = results.csv_bytes(table) if fmt == "csv" else results.arrow_bytes(table)
    response = HttpResponse(body, content_type=results.FORMATS[fmt])
    response["X-Trace-Truncated"] = "true" if outcome.truncated else "false"
    return response


class QueryApi(OrgScopedView):
    required_roles = {"POST": "viewer"}

    @extend_schema(
        request=QueryIn, parameters=[ORG_HEADER], responses={**ANSWERS, 403: NOT_A_MEMBER}
    )
    def post(self, request: Request) -> Response | HttpResponse:
        body = QueryIn(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        outcome = query_run(
            sql=data["sql"],
            catalog=query_catalog(
                org=self.org, role=self.membership.role, hot_dsn=query_reader_dsn()
            ),
            org_id=self.org.pk,
            user_id=request.user.pk,
            timeout_seconds=settings.TRACE_USER_QUERY_SECONDS,
            max_rows=data.get("max_rows", settings.TRACE_QUERY_MAX_ROWS),
            export_format=export_format(data),
        )
        return respond(outcome, data["format"], "/v1/query/results")


class TaskQueryApi(CapabilityView):
    @extend_schema(
        request=QueryIn,
        responses={
            **ANSWERS,
            401: OpenApiResponse(ErrorOut, "Missing, invalid or expired capability token"),
            409: OpenApiResponse(ErrorOut, "stale_attempt: the attempt is no longer current"),
        },
    )
    def post(self, request: Request) -> Response | HttpResponse:
        capability = self.capability(request)
        body = QueryIn(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        outcome = query_run(
            sql=data["sql"],
            catalog=task_catalog(capability=capability, hot_dsn=query_reader_dsn()),
            org_id=capability.org_id,
            task_id=capability.lease.task_id,
            timeout_seconds=settings.TRACE_TASK_QUERY_SECONDS,
            max_rows=data.get("max_rows", settings.TRACE_QUERY_MAX_ROWS),
            export_format=export_format(data),
        )
        return respond(outcome, data["format"], "/v1/task/query/results")


EXPORT_CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
DOWNLOAD = {
    (200, "application/octet-stream"): OpenApiResponse(
        OpenApiTypes.BINARY,
        "The exported file: Parquet (application/vnd.apache.parquet) or CSV (text/csv)",
    ),
    404: OpenApiResponse(ErrorOut, "No such result of the caller's, or it has expired"),
}


def download(record: QueryResult) -> FileResponse:
    return FileResponse(
        query_result_open(record),
        as_attachment=True,
        filename=f"query-{record.pk}.{record.format}",
        content_type=EXPORT_CONTENT_TYPES[record.format],
    )


class QueryResultApi(OrgScopedView):
    @extend_schema(parameters=[ORG_HEADER], responses={**DOWNLOAD, 403: NOT_A_MEMBER})
    def get(self, request: Request, result_id: uuid.UUID) -> FileResponse:
        record = query_result_for(result_id=result_id, org_id=self.org.pk, user_id=request.user.pk)
        return download(record)


class TaskQueryResultApi(CapabilityView):
    @extend_schema(
        responses={
            **DOWNLOAD,
            401: OpenApiResponse(ErrorOut, "Missing, invalid or expired capability token"),
            409: OpenApiResponse(ErrorOut, "stale_attempt: the attempt is no longer current"),
        }
    )
    def get(self, request: Request, result_id: uuid.UUID) -> FileResponse:
        from trace_web.orchestration.services.tasks import task_lease_check

        capability = self.capability(request)
        task_lease_check(lease=capability.lease)
        record = query_result_for(
            result_id=result_id, org_id=capability.org_id, task_id=capability.lease.task_id
        )
        return download(record)
