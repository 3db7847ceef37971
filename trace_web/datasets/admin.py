from django.contrib import admin

from trace_web.datasets.models import (
    DataInvalidation,
    Dataset,
    DatasetCursor,
    DatasetVersion,
    IntegrityCheck,
    PartitionVersion,
)


class VersionInline(admin.TabularInline):
    model = DatasetVersion
    fields = ["generation", "definition_hash", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "published_name", "storage_kind", "update_strategy", "created_at"]
    list_filter = ["org", "storage_kind"]
    search_fields = ["published_name", "dag_name", "job_name"]
    # Identity and lineage come from DAG sync; only who may read it is edited by hand.
    readonly_fields = [
        "org",
        "dag_name",
        "job_name",
        "output_index",
        "published_name",
        "storage_kind",
        "update_strategy",
        "unique_key",
    ]
    inlines = [VersionInline]


@admin.register(PartitionVersion)
class PartitionVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset_version", "partition_key", "row_count", "bytes", "committed_at"]
    readonly_fields = [f.name for f in PartitionVersion._meta.fields]


@admin.register(DatasetCursor)
class DatasetCursorAdmin(admin.ModelAdmin):
    list_display = ["dataset", "consumer_dag", "consumer_job", "position", "updated_at"]


@admin.register(DataInvalidation)
class DataInvalidationAdmin(admin.ModelAdmin):
    list_display = ["dataset", "kind", "range_start", "range_end", "partition_key", "scheduled_at"]


@admin.register(IntegrityCheck)
class IntegrityCheckAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the integrity_check operator's committed results."""

    list_display = [
        "__str__",
        "org",
        "chain_id",
        "range_start",
        "range_end",
        "blocks_checked",
        "mismatches",
        "status",
        "finished_at",
    ]
    list_filter = ["org", "chain_id", "status"]
    readonly_fields = [f.name for f in IntegrityCheck._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
