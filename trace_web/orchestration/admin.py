"""Admin for DAG versions, jobs, tasks and the outbox. Rows are read-only: state changes only
through the services, which the admin actions call (cancel, retry, run now; activate and roll
back a DAG version), so every change is fenced and recorded as it is from the API or the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest

from trace_web.errors import TraceError
from trace_web.orchestration.models import (
    DagPointer,
    DagVersion,
    Job,
    JobInput,
    Outbox,
    Task,
    TaskTransition,
)
from trace_web.orchestration.services.dags import dag_activate, dag_rollback
from trace_web.orchestration.services.jobs import job_run_now, job_tasks_cancel, job_tasks_retry
from trace_web.orchestration.services.tasks import task_cancel, task_retry, task_run_now


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Actions (`permissions=["operate"]`) need the model's change permission, although
        no row can be edited by hand."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def run_each(
        self,
        request: HttpRequest,
        rows: Iterable[Any],
        act: Callable[[Any], str],
        label: Callable[[Any], str] = str,
    ) -> None:
        """Call one service per selected row. Each success and each refusal (a TraceError)
        is reported to the admin user; a refusal never becomes a 500, nor undoes the rows
        that succeeded."""
        for row in rows:
            name = label(row)  # before acting: the row may change
            try:
                done = act(row)
            except TraceError as exc:
                self.message_user(request, f"{name}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{name}: {done}", messages.SUCCESS)


def _by(request: HttpRequest) -> str:
    return f"by {request.user.get_username()} (admin)"


class JobInline(admin.TabularInline):
    model = Job
    fields = ["name", "activation", "runtime", "operator", "source_kind", "schedule"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(DagVersion)
class DagVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "version",
        "is_active",
        "org",
        "content_hash",
        "created_by",
        "created_at",
    ]
    list_filter = ["org", "name"]
    inlines = [JobInline]
    actions = ["activate", "roll_back"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        current = DagPointer.objects.filter(current=OuterRef("pk"))
        return super().get_queryset(request).annotate(active=Exists(current))

    @admin.display(boolean=True, description="active", ordering="active")
    def is_active(self, obj: DagVersion) -> bool:
        return obj.active

    @admin.action(description="Activate the selected version", permissions=["operate"])
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        def act(version: DagVersion) -> str:
            dag_activate(
                org=version.org, name=version.name, version=version.version, user=request.user
            )
            return f"v{version.version} is the active version of {version.name!r}"

        self.run_each(request, queryset.select_related("org"), act)

    @admin.action(
        description="Roll back the selected versions' DAGs to their previous version",
        permissions=["operate"],
    )
    def roll_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        dags = {(v.org, v.name): v for v in queryset.select_related("org")}

        def act(version: DagVersion) -> str:
            pointer = dag_rollback(org=version.org, name=version.name, user=request.user)
            return f"rolled back to v{pointer.current.version}"

        self.run_each(request, dags.values(), act, lambda v: f"DAG {v.org.slug}:{v.name}")


@admin.register(DagPointer)
class DagPointerAdmin(ReadOnlyAdmin):
    list_display = ["name", "org", "current", "previous", "updated_by", "updated_at"]


class JobInputInline(admin.TabularInline):
    model = JobInput
    fk_name = "job"
    fields = ["position", "from_job", "from_output", "from_dataset_name", "where"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "dag_version",
        "in_active_version",
        "activation",
        "runtime",
        "operator",
        "source_kind",
    ]
    list_filter = ["activation", "runtime", "operator"]
    inlines = [JobInputInline]
    actions = ["run_now", "cancel_tasks", "retry_tasks"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        current = DagPointer.objects.filter(current=OuterRef("dag_version"))
        return super().get_queryset(request).annotate(active=Exists(current))

    @admin.display(boolean=True, description="active version", ordering="active")
    def in_active_version(self, obj: Job) -> bool:
        return obj.active

    @admin.action(description="Run the selected jobs now (a manual task)", permissions=["operate"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        def act(job: Job) -> str:
            task = job_run_now(job_id=job.pk, org_id=job.org_id)
            return f"task {task.pk} queued"

        self.run_each(request, queryset, act)

    @admin.action(description="Cancel the selected jobs' live tasks", permissions=["operate"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        def act(job: Job) -> str:
            count = job_tasks_cancel(
                job_id=job.pk, org_id=job.org_id, reason=f"canceled {_by(request)}"
            )
            return f"{count} live task(s) canceled"

        self.run_each(request, queryset, act)

    @admin.action(
        description="Retry the selected jobs' tasks that failed for good", permissions=["operate"]
    )
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        def act(job: Job) -> str:
            count = job_tasks_retry(
                job_id=job.pk, org_id=job.org_id, reason=f"retried {_by(request)}"
            )
            return f"{count} failed task(s) queued again"

        self.run_each(request, queryset, act)


class TransitionInline(admin.TabularInline):
    model = TaskTransition
    fields = ["attempt", "from_status", "to_status", "worker_id", "reason", "at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "job",
        "status",
        "attempt",
        "max_attempts",
        "trigger",
        "next_retry_at",
        "short_error",
        "worker_id",
        "created_at",
    ]
    list_filter = ["status", "trigger", "org"]
    list_select_related = ["job__dag_version__org"]
    search_fields = ["id", "job__name", "partition_key"]
    inlines = [TransitionInline]
    actions = ["cancel", "retry", "run_now"]

    @admin.display(description="error (current attempt)")
    def short_error(self, obj: Task) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"

    @admin.action(description="Cancel the selected tasks", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        def act(task: Task) -> str:
            task_cancel(task_id=task.pk, org_id=task.org_id, reason=f"canceled {_by(request)}")
            return "canceled"

        self.run_each(request, queryset, act, _task_label)

    @admin.action(
        description="Retry the selected tasks (failed for good or canceled)",
        permissions=["operate"],
    )
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        def act(task: Task) -> str:
            done = task_retry(task_id=task.pk, org_id=task.org_id, reason=f"retried {_by(request)}")
            return f"queued as attempt {done.attempt} of {done.max_attempts}"

        self.run_each(request, queryset, act, _task_label)

    @admin.action(
        description="Run now the selected failed tasks waiting for their retry",
        permissions=["operate"],
    )
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        def act(task: Task) -> str:
            done = task_run_now(
                task_id=task.pk, org_id=task.org_id, reason=f"run now {_by(request)}"
            )
            return f"queued as attempt {done.attempt}"

        self.run_each(request, queryset, act, _task_label)


def _task_label(task: Task) -> str:
    return f"task {task.pk} ({task.job.name})"


@admin.register(Outbox)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "status", "tries", "available_at", "last_error"]
    list_filter = ["status", "kind"]
