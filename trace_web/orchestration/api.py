"""Orchestration REST API: DAG versions and activation, manual runs, webhooks, tasks, and the
task-scoped endpoints that runtimes call with their capability token. Views parse and call
one service each."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from trace_operators.validation import Problems
from trace_web.errors import NotFound, Unauthenticated, ValidationFailed
from trace_web.orchestration import serializers as s
from trace_web.orchestration.models import DagPointer, DagVersion, Task
from trace_web.orchestration.selectors import dag_describe, tasks_filter
from trace_web.orchestration.services.dags import dag_activate, dag_rollback, dag_sync
from trace_web.orchestration.services.sources import (
    job_run_manual,
    webhook_authenticate,
    webhook_receive,
    webhook_secret_rotate,
)
from trace_web.orchestration.services.tasks import (
    TaskScope,
    task_cancel,
    task_complete,
    task_events,
    task_fail,
    task_heartbeat,
)
from trace_web.orchestration.services.tokens import capability_token_verify
from trace_web.orchestration.task_reports import (
    CompleteBody,
    EventsBody,
    FailBody,
    complete_body_parse,
    events_body_parse,
    fail_body_parse,
)
from trace_web.orgs.models import Role
from trace_web.orgs.scoping import OrgScopedView
from trace_web.orgs.serializers import (
    NOT_A_MEMBER,
    ORG_HEADER,
    ROLE_TOO_LOW,
    ErrorOut,
)
from trace_web.parsers import StrictJSONParser

TOKEN_REFUSED = OpenApiResponse(ErrorOut, "Missing, invalid or expired capability token")
LEASE_LOST = OpenApiResponse(
    ErrorOut, "stale_attempt: the attempt is no longer current (stop working)"
)
NEXT_PAGE_LINK = OpenApiParameter(
    "Link",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200],
    description='On a full page: `<URL of the next, older page>; rel="next"` (the same query '
    "with `before_id` set to this page's last id); absent on the last page",
)
COMMIT_REFUSED = OpenApiResponse(
    ErrorOut,
    "stale_attempt: the attempt is no longer current; conflict: a partition is already "
    "committed with another publication",
)


class DeclaredAuthSchema(AutoSchema):
    """Documents a credential that the view checks itself, with no DRF authenticator."""

    scheme_name: str
    scheme: dict

    def get_auth(self) -> list[dict]:
        self.registry.register_on_missing(
            ResolvedComponent(
                name=self.scheme_name,
                type=ResolvedComponent.SECURITY_SCHEMA,
                object=self.scheme_name,
                schema=self.scheme,
            )
        )
        return [{self.scheme_name: []}]


class CapabilityTokenSchema(DeclaredAuthSchema):
    scheme_name = "capabilityToken"
    scheme = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class WebhookSecretSchema(DeclaredAuthSchema):
    scheme_name = "webhookSecret"
    scheme = {"type": "apiKey", "in": "header", "name": "X-Trace-Webhook-Secret"}


class DagListApi(OrgScopedView):
    @extend_schema(parameters=[ORG_HEADER], responses={200: s.DagOut(many=True), 403: NOT_A_MEMBER})
    def get(self, request: Request) -> Response:
        pointers = self.scoped(DagPointer).select_related("current")
        names = sorted(set(self.scoped(DagVersion).values_list("name", flat=True)))
        active = {p.name: p.current.version for p in pointers}
        return Response([{"name": n, "active_version": active.get(n)} for n in names])


class DagDetailApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER, s.DagDetailQuery],
        responses={
            200: s.DagDetailOut,
            400: OpenApiResponse(ErrorOut, "A bad query parameter"),
            403: NOT_A_MEMBER,
            404: OpenApiResponse(ErrorOut, "No DAG of that name in the org, or no such version"),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        query = s.DagDetailQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        described = dag_describe(
            name=name,
            versions=self.scoped(DagVersion).filter(name=name),
            pointer=self.scoped(DagPointer).filter(name=name).select_related("current").first(),
            version=query.validated_data.get("version"),
        )
        context = {"active_ids": described.pop("active_ids")}
        return Response(s.DagDetailOut(described, context=context).data)


class DagVersionsApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER],
        responses={
            200: s.DagVersionOut(many=True),
            403: NOT_A_MEMBER,
            404: OpenApiResponse(ErrorOut, "No DAG of that name"),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        versions = self.scoped(DagVersion).filter(name=name).select_related("created_by")
        if not versions.exists():
            raise NotFound(f"no DAG named {name!r}")
        active_ids = set(
            self.scoped(DagPointer).filter(name=name).values_list("current_id", flat=True)
        )
        return Response(
            s.DagVersionOut(versions, many=True, context={"active_ids": active_ids}).data
        )

    @extend_schema(
        description="Deploy a version of the DAG: JSON (or a form) with its YAML, or the YAML "
        "document itself as the body with a YAML content type (application/yaml, text/yaml, "
        "...) and `?activate=true` to activate it.",
        request={
            "application/json": s.DagVersionIn,
            "application/x-www-form-urlencoded": s.DagVersionIn,
            "multipart/form-data": s.DagVersionIn,
            "application/yaml": OpenApiTypes.STR,
        },
        parameters=[
            ORG_HEADER,
            OpenApiParameter(
                "activate",
                OpenApiTypes.BOOL,
                OpenApiParameter.QUERY,
                description="Only with a YAML body: activate the version (`true`)",
            ),
        ],
        responses={
            201: OpenApiResponse(s.DagVersionSyncOut, "A new version was stored"),
            200: OpenApiResponse(s.DagVersionSyncOut, "The same content was already a version"),
            400: OpenApiResponse(
                ErrorOut, "Invalid body, or the DAG document is invalid (`errors` per field)"
            ),
            403: ROLE_TOO_LOW,
        },
    )
    def post(self, request: Request, name: str) -> Response:
        if request.content_type and "yaml" in request.content_type:
            try:
                yaml_text = request.body.decode()
            except UnicodeDecodeError as exc:
                raise ValidationFailed(f"body: not UTF-8 text ({exc.reason})") from None
            activate = request.query_params.get("activate") == "true"
        else:
            body = s.DagVersionIn(data=request.data)
            body.is_valid(raise_exception=True)
            yaml_text, activate = body.validated_data["yaml"], body.validated_data["activate"]
        result = dag_sync(
            org=self.org,
            yaml_text=yaml_text,
            user=request.user,
            activate=activate,
            expected_name=name,
        )
        data = s.DagVersionOut(result.version, context={"active_ids": set()}).data
        data["created"] = result.created
        data["active"] = activate or DagPointer.objects.filter(current=result.version).exists()
        return Response(
            data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )


class DagActiveApi(OrgScopedView):
    @extend_schema(
        request=s.ActivateIn,
        parameters=[ORG_HEADER],
        responses={
            200: s.DagActiveOut,
            400: OpenApiResponse(
                ErrorOut, "Not exactly one of version/rollback, or nothing to roll back to"
            ),
            403: ROLE_TOO_LOW,
            404: OpenApiResponse(ErrorOut, "No such version, or no active version to roll back"),
        },
    )
    def put(self, request: Request, name: str) -> Response:
        body = s.ActivateIn(data=request.data)
        body.is_valid(raise_exception=True)
        if body.validated_data["rollback"]:
            pointer = dag_rollback(org=self.org, name=name, user=request.user)
        else:
            pointer = dag_activate(
                org=self.org, name=name, version=body.validated_data["version"], user=request.user
            )
        return Response(
            {
                "name": name,
                "active_version": pointer.current.version,
                "previous_version": pointer.previous.version if pointer.previous else None,
            }
        )


class JobRunApi(OrgScopedView):
    @extend_schema(
        request=s.RunIn,
        parameters=[ORG_HEADER],
        responses={
            201: s.TaskOut,
            400: OpenApiResponse(ErrorOut, "Invalid body or scope"),
            403: ROLE_TOO_LOW,
            404: OpenApiResponse(ErrorOut, "The DAG has no active version, or no such job"),
        },
    )
    def post(self, request: Request, name: str, job: str) -> Response:
        body = s.RunIn(data=request.data)
        body.is_valid(raise_exception=True)
        scope = TaskScope(**body.validated_data.get("scope", {}))
        task = job_run_manual(
            org=self.org,
            dag_name=name,
            job_name=job,
            payload=body.validated_data["payload"],
            scope=scope,
        )
        return Response(s.TaskOut(task).data, status=status.HTTP_201_CREATED)


class WebhookSecretApi(OrgScopedView):
    required_roles = {"POST": Role.ADMIN}

    @extend_schema(
        request=None,
        parameters=[ORG_HEADER],
        responses={
            200: s.WebhookSecretOut,
            400: OpenApiResponse(ErrorOut, "The job is not a webhook source"),
            403: OpenApiResponse(
                ErrorOut, "Not signed in, not a member of the org (X-Trace-Org), or not its admin"
            ),
            404: OpenApiResponse(ErrorOut, "The DAG has no active version, or no such job"),
        },
    )
    def post(self, request: Request, name: str, job: str) -> Response:
        secret = webhook_secret_rotate(org=self.org, dag_name=name, job_name=job)
        url = f"/v1/hooks/{self.org.slug}/{name}/{job}"
        return Response({"url": url, "secret": secret, "header": "X-Trace-Webhook-Secret"})


class WebhookApi(APIView):
    """A webhook source. Authenticated by its per-source secret only."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    parser_classes = [StrictJSONParser]  # a form or an upload is a 415, not a list payload
    schema = WebhookSecretSchema()

    @extend_schema(
        request={
            "application/json": {
                "description": "Any JSON: an object is the task's payload, any other value is "
                'wrapped as {"body": value}'
            },
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Optional, 1 to 200 visible ASCII characters: a delivery repeated "
                "with the same key (a sender's retry) creates no second task and answers 200 "
                "with the first one",
            )
        ],
        responses={
            202: OpenApiResponse(s.WebhookAcceptedOut, "A task of the job was queued"),
            200: OpenApiResponse(
                s.WebhookAcceptedOut, "A replay: the task this Idempotency-Key already made"
            ),
            400: OpenApiResponse(ErrorOut, "Unparsable body, or the job is not a webhook source"),
            401: OpenApiResponse(ErrorOut, "Bad or missing webhook secret"),
            404: OpenApiResponse(ErrorOut, "The DAG has no active version, or no such job"),
            415: OpenApiResponse(ErrorOut, "Unsupported content type"),
        },
    )
    def post(self, request: Request, org: str, name: str, job: str) -> Response:
        source = {"org_slug": org, "dag_name": name, "job_name": job}
        secret = request.headers.get("X-Trace-Webhook-Secret", "")
        webhook_authenticate(**source, secret=secret)  # a wrong secret is a 401, whatever the body
        payload = request.data if isinstance(request.data, dict) else {"body": request.data}
        task, created = webhook_receive(
            **source,
            secret=secret,
            payload=dict(payload),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        return Response(
            {"task_id": task.pk, "status": task.status},
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )


class TaskListApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER, s.TaskListQuery, NEXT_PAGE_LINK],
        responses={
            200: s.TaskOut(many=True),
            400: OpenApiResponse(ErrorOut, "A bad query parameter"),
            403: NOT_A_MEMBER,
        },
    )
    def get(self, request: Request) -> Response:
        query = s.TaskListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {k: v for k, v in query.validated_data.items() if k != "limit"}
        tasks = tasks_filter(self.scoped(Task).select_related("job", "job__dag_version"), **filters)
        page = list(tasks[: query.validated_data["limit"]])
        response = Response(s.TaskOut(page, many=True).data)
        if len(page) == query.validated_data["limit"]:  # there may be more: link the next page
            params = request.query_params.copy()
            params["before_id"] = str(page[-1].pk)
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
            response["Link"] = f'<{next_url}>; rel="next"'
        return response


class TaskDetailApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER],
        responses={
            200: s.TaskDetailOut,
            403: NOT_A_MEMBER,
            404: OpenApiResponse(ErrorOut, "No such task in the org"),
        },
    )
    def get(self, request: Request, task_id: int) -> Response:
        task = (
            self.scoped(Task).select_related("job", "job__dag_version").filter(pk=task_id).first()
        )
        if task is None:
            raise NotFound(f"no task {task_id}")
        return Response(s.TaskDetailOut(task).data)


class TaskCancelApi(OrgScopedView):
    @extend_schema(
        request=None,
        parameters=[ORG_HEADER],
        responses={
            200: s.TaskOut,
            400: OpenApiResponse(ErrorOut, "The task has already finished"),
            403: ROLE_TOO_LOW,
            404: OpenApiResponse(ErrorOut, "No such task in the org"),
        },
    )
    def post(self, request: Request, task_id: int) -> Response:
        task = task_cancel(
            task_id=task_id, org_id=self.org.pk, reason=f"canceled by {request.user}"
        )
        return Response(s.TaskOut(task).data)


class CapabilityView(APIView):
    """Task-scoped endpoints: the caller holds only a capability token for one attempt."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    schema = CapabilityTokenSchema()

    def capability(self, request: Request):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise Unauthenticated("missing capability token (Authorization: Bearer ...)")
        return capability_token_verify(header.removeprefix("Bearer ").strip())

    def lease(self, request: Request):
        return self.capability(request).lease


class TaskHeartbeatApi(CapabilityView):
    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(s.TaskHeartbeatOut, "The lease was extended"),
            401: TOKEN_REFUSED,
            404: OpenApiResponse(ErrorOut, "The task no longer exists"),
            409: LEASE_LOST,
        },
    )
    def post(self, request: Request) -> Response:
        expires = task_heartbeat(lease=self.lease(request))
        return Response({"lease_expires_at": expires})


def _report_body(parse, data):
    """A runtime's report checked at the edge (task_reports), every problem in one 400."""
    try:
        return parse(data)
    except Problems as exc:
        raise ValidationFailed.of(exc.errors) from None


class TaskCompleteApi(CapabilityView):
    @extend_schema(
        request=CompleteBody,
        responses={
            200: OpenApiResponse(s.TaskCompleteOut, "Outputs committed, task Completed"),
            400: OpenApiResponse(ErrorOut, "An output was refused (fields, range, location)"),
            401: TOKEN_REFUSED,
            404: OpenApiResponse(ErrorOut, "No dataset for an output"),
            409: COMMIT_REFUSED,
        },
    )
    def post(self, request: Request) -> Response:
        lease = self.lease(request)
        body = _report_body(complete_body_parse, request.data)
        task = task_complete(lease=lease, outputs=body.outputs)
        return Response({"task_id": task.pk, "status": task.status, "outputs": task.outputs})


class TaskFailApi(CapabilityView):
    @extend_schema(
        request=FailBody,
        responses={
            200: OpenApiResponse(s.TaskFailOut, "Task Failed; retried at next_retry_at if set"),
            400: OpenApiResponse(ErrorOut, "Invalid body"),
            401: TOKEN_REFUSED,
            409: LEASE_LOST,
        },
    )
    def post(self, request: Request) -> Response:
        lease = self.lease(request)
        body = _report_body(fail_body_parse, request.data)
        task = task_fail(lease=lease, error=body.error, retryable=body.retryable)
        return Response(
            {"task_id": task.pk, "status": task.status, "next_retry_at": task.next_retry_at}
        )


class TaskEventsApi(CapabilityView):
    @extend_schema(
        request=EventsBody,
        responses={
            200: OpenApiResponse(s.TaskEventsOut, "Every event was committed or recorded"),
            400: OpenApiResponse(ErrorOut, "An event was refused; none is kept"),
            401: TOKEN_REFUSED,
            404: OpenApiResponse(ErrorOut, "No dataset for an event's output"),
            409: COMMIT_REFUSED,
        },
    )
    def post(self, request: Request) -> Response:
        lease = self.lease(request)
        body = _report_body(events_body_parse, request.data)
        accepted = task_events(lease=lease, events=body.events)
        return Response({"accepted": accepted})
