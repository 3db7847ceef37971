"""Admin for DAG versions, jobs and tasks. Task state is read-only here: it changes only
through the fenced services, never by hand-editing a row."""

from django.contrib import admin

from trace_web.orchestration.models import (
    DagPointer,
    DagVersion,
    Job,
    JobInput,
    Outbox,
    Task,
    TaskTransition,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class JobInline(admin.TabularInline):
    model = Job
    fields = ["name", "activation", "runtime", "operator", "source_kind", "schedule"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(DagVersion)
class DagVersionAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "org", "content_hash", "created_by", "created_at"]
    list_filter = ["org", "name"]
    inlines = [JobInline]


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
    list_display = ["name", "dag_version", "activation", "runtime", "operator", "source_kind"]
    list_filter = ["activation", "runtime", "operator"]
    inlines = [JobInputInline]


class TransitionInline(admin.TabularInline):
    model = TaskTransition
    fields = ["attempt", "from_status", "to_status", "worker_id", "reason", "at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "status", "attempt", "trigger", "worker_id", "created_at"]
    list_filter = ["status", "trigger", "org"]
    search_fields = ["id", "job__name", "partition_key"]
    inlines = [TransitionInline]


@admin.register(Outbox)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "status", "tries", "available_at", "last_error"]
    list_filter = ["status", "kind"]
