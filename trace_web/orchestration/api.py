"""Orchestration REST API: DAG versions and activation, manual runs, webhooks, tasks, and the
task-scoped endpoints that runtimes call with their capability token. Views parse and call
one service each."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from trace_web.errors import NotFound, Unauthenticated
from trace_web.orchestration import serializers as s
from trace_web.orchestration.models import DagPointer, DagVersion, Task
from trace_web.orchestration.services.dags import dag_activate, dag_rollback, dag_sync
from trace_web.orchestration.services.sources import (
    job_run_manual,
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
from trace_web.orgs.models import Role
from trace_web.orgs.scoping import OrgScopedView


class DagListApi(OrgScopedView):
    def get(self, request: Request) -> Response:
        pointers = self.scoped(DagPointer).select_related("current")
        names = sorted(set(self.scoped(DagVersion).values_list("name", flat=True)))
        active = {p.name: p.current.version for p in pointers}
        return Response([{"name": n, "active_version": active.get(n)} for n in names])


class DagVersionsApi(OrgScopedView):
    @extend_schema(responses=s.DagVersionOut(many=True))
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

    @extend_schema(request=s.DagVersionIn, responses=s.DagVersionOut)
    def post(self, request: Request, name: str) -> Response:
        if request.content_type and "yaml" in request.content_type:
            yaml_text, activate = (
                request.body.decode(),
                request.query_params.get("activate") == "true",
            )
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
    @extend_schema(request=s.ActivateIn)
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
    @extend_schema(request=s.RunIn, responses=s.TaskOut)
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

    def post(self, request: Request, name: str, job: str) -> Response:
        secret = webhook_secret_rotate(org=self.org, dag_name=name, job_name=job)
        url = f"/v1/hooks/{self.org.slug}/{name}/{job}"
        return Response({"url": url, "secret": secret, "header": "X-Trace-Webhook-Secret"})


class WebhookApi(APIView):
    """A webhook source. Authenticated by its per-source secret only."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def post(self, request: Request, org: str, name: str, job: str) -> Response:
        payload = request.data if isinstance(request.data, dict) else {"body": request.data}
        task = webhook_receive(
            org_slug=org,
            dag_name=name,
            job_name=job,
            secret=request.headers.get("X-Trace-Webhook-Secret", ""),
            payload=dict(payload),
        )
        return Response(
            {"task_id": task.pk, "status": task.status}, status=status.HTTP_202_ACCEPTED
        )


class TaskListApi(OrgScopedView):
    @extend_schema(responses=s.TaskOut(many=True))
    def get(self, request: Request) -> Response:
        tasks = self.scoped(Task).select_related("job", "job__dag_version").order_by("-id")
        for param, field in (
            ("status", "status"),
            ("dag", "job__dag_version__name"),
            ("job", "job__name"),
        ):
            if value := request.query_params.get(param):
                tasks = tasks.filter(**{field: value})
        limit = min(int(request.query_params.get("limit", 100)), 1000)
        return Response(s.TaskOut(tasks[:limit], many=True).data)


class TaskDetailApi(OrgScopedView):
    @extend_schema(responses=s.TaskDetailOut)
    def get(self, request: Request, task_id: int) -> Response:
        task = (
            self.scoped(Task).select_related("job", "job__dag_version").filter(pk=task_id).first()
        )
        if task is None:
            raise NotFound(f"no task {task_id}")
        return Response(s.TaskDetailOut(task).data)


class TaskCancelApi(OrgScopedView):
    @extend_schema(request=None, responses=s.TaskOut)
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

    def lease(self, request: Request):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise Unauthenticated("missing capability token (Authorization: Bearer ...)")
        return capability_token_verify(header.removeprefix("Bearer ").strip()).lease


class TaskHeartbeatApi(CapabilityView):
    def post(self, request: Request) -> Response:
        expires = task_heartbeat(lease=self.lease(request))
        return Response({"lease_expires_at": expires})


class TaskCompleteApi(CapabilityView):
    @extend_schema(request=s.OutputIn)
    def post(self, request: Request) -> Response:
        lease = self.lease(request)
        body = s.OutputIn(data=request.data)
        body.is_valid(raise_exception=True)
        task = task_complete(lease=lease, outputs=body.validated_data.get("outputs"))
        return Response({"task_id": task.pk, "status": task.status, "outputs": task.outputs})


class TaskFailApi(CapabilityView):
    @extend_schema(request=s.FailIn)
    def post(self, request: Request) -> Response:
        lease = self.lease(request)
        body = s.FailIn(data=request.data)
        body.is_valid(raise_exception=True)
        task = task_fail(lease=lease, **body.validated_data)
        return Response(
            {"task_id": task.pk, "status": task.status, "next_retry_at": task.next_retry_at}
        )


class TaskEventsApi(CapabilityView):
    @extend_schema(request=s.EventsIn)
    def post(self, request: Request) -> Response:
        lease = self.lease(request)
        body = s.EventsIn(data=request.data)
        body.is_valid(raise_exception=True)
        accepted = task_events(lease=lease, events=body.validated_data["events"])
        return Response({"accepted": accepted})
